"""Faking must not pay (DESIGN.md §2, docs/security.md): the penalty inequality.

A miner that fakes one segment of a unit (the weakest fake: the last segment is always
re-executed) is caught with probability d, the chance that an audit draw hits that
segment and that the auditor drawn is not in the cheat's coalition.  Faking is then
worth (1 - d) * reward - d * slash, which is not positive when
slash >= reward * (1 - d) / d.  Exact fractions, so the check has no rounding.
"""
from __future__ import annotations

import fractions
import math
from typing import Protocol

BPS = 10_000
AUDITOR_COALITION = fractions.Fraction(1, 3)  # the share of auditors a cheat may control


class _Training(Protocol):
    segments: int
    audit_segments: int


class _Economics(Protocol):
    emission_per_round: int
    reward_units_bps: int
    min_miner_bond: int
    fraud_slash_bps: int


def detection_probability(segments: int, audit_segments: int) -> fractions.Fraction:
    """The chance that a unit's audit draws its one faked segment, not the last."""
    if segments == 1:
        return fractions.Fraction(1)
    return 1 - (1 - fractions.Fraction(1, segments)) ** audit_segments


def effective_detection(training: _Training) -> fractions.Fraction:
    """Detection of the weakest fake when its auditor may be a colluder."""
    return detection_probability(training.segments, training.audit_segments) * (1 - AUDITOR_COALITION)


def unit_reward_cap(economics: _Economics) -> fractions.Fraction:
    """The most one unit can earn in a round: the whole units pool."""
    return fractions.Fraction(economics.emission_per_round * economics.reward_units_bps, BPS)


def unit_slash(economics: _Economics) -> fractions.Fraction:
    """What a unit proven fraudulent or withheld costs at the least: the slashed share
    of the bond every unit must carry."""
    return fractions.Fraction(economics.min_miner_bond * economics.fraud_slash_bps, BPS)


def penalty_shortfall(training: _Training, economics: _Economics) -> str | None:
    """None if faking the weakest unit the genesis permits does not pay, else why."""
    d = effective_detection(training)
    reward, slash = unit_reward_cap(economics), unit_slash(economics)
    needed = reward * (1 - d) / d
    if slash >= needed:
        return None
    return (f"a unit risks a slash of {math.floor(slash)}, below reward * (1 - d) / d = "
            f"{math.ceil(needed)} for a unit reward of {math.floor(reward)} and detection "
            f"d = {float(d):.4f} (training.audit_segments {training.audit_segments} of "
            f"{training.segments} segments, auditor coalition {AUDITOR_COALITION})")
