"""A round's close (DESIGN.md §2, aggregate): decided by the block at its closing height.

The close judges every unit committed in the round (slashed if proven fraudulent,
withheld and slashed if its challenged data or attested delta was claimed withheld
and never served, accepted if every challenged segment was audited by a report that
stands, rejected otherwise), slashes auditors whose passes were disproven or whose
evidence was disputed, steps the
model over the accepted deltas, pays the round's emission to the accepted units'
miners, their auditors and the proposer, counts each miner's accepted work, and
at an epoch's end rotates the committee by that work; the round that leaves the
retention window is forgotten (node.state.retention).
"""
from __future__ import annotations

import collections
import dataclasses

from node.state.equivocation import barred_from_committee
from node.state.records import (MODEL_KEY, CarryRecord, ChallengeRecord, Committee, ModelRecord, WorkCount, carry_key,
                                work_count_key)
from node.state.retention import forget_old_round
from node.state.transition import BlockError, Transition, TxError
from node.types.blocks import (ACCEPTED, PAID_AS_PROPOSER, PAID_FOR_AUDITS, PAID_FOR_UNITS, REJECTED, SLASHED,
                               WITHHELD, CommitteeMember, Payment, RoundClose, UnitOutcome)
from node.types.genesis import BPS
from node.types.transactions import WorkCommitment


@dataclasses.dataclass(frozen=True)
class _Unit:
    """One committed unit at its round's close."""
    outcome: UnitOutcome
    commitment: WorkCommitment
    reports: tuple[tuple[int, bytes], ...]  # (segment, auditor) of each report that stands
    disputed: tuple[tuple[int, bytes, bytes], ...]  # (segment, auditor, prover) of each disputed one

    @property
    def auditors(self) -> tuple[bytes, ...]:
        """One entry per audit report on the unit."""
        return tuple(auditor for _, auditor in self.reports)


def close_round(t: Transition) -> tuple[RoundClose, ...]:
    """At a round's closing height, decide the round from the state after the block's
    transactions and apply the decision to t; () at any other height.  WorkUnavailable
    if the new model cannot be computed here; BlockError if a payment overflows."""
    if not t.schedule.is_close(t.height):
        return ()
    round_ = t.schedule.round_of(t.height)
    units = _round_units(t, round_)
    _punish(t, round_, units)
    accepted = [u for u in units if u.outcome.status == ACCEPTED]
    root, loss_bits = _next_model(t, round_, [u.commitment for u in accepted])
    payments = _payments(t, accepted, t.proposer)
    epoch = round_ // t.consensus.epoch_rounds
    for unit in accepted:
        miner = unit.outcome.miner
        t.put(work_count_key(epoch, miner), WorkCount(t.work_count(epoch, miner) + 1))
        _record_carry(t, round_, unit)
    next_committee = _next_committee(t, round_)
    if next_committee:
        t.change_committee(Committee(next_committee))
    try:
        for payment in payments:
            t.emit(payment.to, payment.amount)
    except TxError as exc:
        raise BlockError(f"round close: {exc}") from None
    t.put(MODEL_KEY, ModelRecord(round_ + 1, root, loss_bits))
    forget_old_round(t, round_)
    return (RoundClose(round=round_, units=tuple(u.outcome for u in units), model_root=root,
                       eval_loss_bits=loss_bits, payments=payments, next_committee=next_committee),)


def _round_units(t: Transition, round_: int) -> list[_Unit]:
    """Every unit committed in round_, in (miner, unit) order, with its outcome."""
    reports: dict[tuple[bytes, int], list[tuple[int, bytes]]] = collections.defaultdict(list)
    disputes = set(t.round_disputes(round_))
    disputed: dict[tuple[bytes, int], list[tuple[int, bytes, bytes]]] = collections.defaultdict(list)
    for miner, unit, segment, auditor in sorted(disputes):
        prover = t.dispute(round_, miner, unit, segment, auditor).prover
        disputed[(miner, unit)].append((segment, auditor, prover))
    for miner, unit, segment, auditor in t.round_audits(round_):
        if (miner, unit, segment, auditor) not in disputes:
            reports[(miner, unit)].append((segment, auditor))
    claimed: dict[tuple[bytes, int], set[int]] = collections.defaultdict(set)
    for miner, unit, segment, _ in t.round_withheld_claims(round_):
        claimed[(miner, unit)].add(segment)
    record = t.challenge(round_)
    committee = t.committee()
    delta_claims: dict[tuple[bytes, int], int] = collections.defaultdict(int)
    for miner, unit, member in t.round_delta_claims(round_):
        delta_claims[(miner, unit)] += committee.power_of(member)
    units = []
    for miner, unit, commitment in t.round_commitments(round_):
        unit_reports = reports.get((miner, unit), [])
        # a third of the power cannot fetch the delta: an honest one among them is enough
        # to know it was not served, and without them no close could be computed
        delta_withheld = 3 * delta_claims.get((miner, unit), 0) >= committee.total_power
        status = _unit_status(t, round_, record, miner, unit, set(unit_reports),
                              claimed.get((miner, unit), set()), (miner, unit) in disputed, delta_withheld)
        units.append(_Unit(UnitOutcome(miner, unit, status), commitment, tuple(unit_reports),
                           tuple(disputed.get((miner, unit), ()))))
    return units


def _unit_status(t: Transition, round_: int, record: ChallengeRecord, miner: bytes, unit: int,
                 reports: set[tuple[int, bytes]], claimed: set[int], disputed: bool, delta_withheld: bool) -> int:
    """SLASHED if proven fraudulent; WITHHELD if a challenged segment is unreported and
    claimed withheld, or if its attested delta is claimed withheld; ACCEPTED if each
    draw's segments were reported by its auditors, or (once a claim or a dispute opened
    the unit to fallback audits) every challenged segment by anyone; REJECTED
    otherwise, which costs the miner only its reward."""
    if t.fraud_record(round_, miner, unit) is not None:
        return SLASHED
    challenge = record.unit_challenge(miner, unit, t.training)
    if challenge is None:
        return REJECTED  # the round closed before its choosers held a third of the power
    audited = {segment for segment, _ in reports}
    if delta_withheld or (set(challenge.segments) - audited) & claimed:
        return WITHHELD
    if claimed or disputed:
        return ACCEPTED if audited >= set(challenge.segments) else REJECTED
    return ACCEPTED if challenge.covered(reports) else REJECTED


def _record_carry(t: Transition, round_: int, unit: _Unit) -> None:
    """An accepted unit's end state is what its miner's next unit of that index may carry
    (its AdamW moments): the last leaf, which the standing reports on the last segment,
    challenged in every unit, proved against the committed tree."""
    last = t.training.segments - 1
    miner, index = unit.outcome.miner, unit.outcome.unit
    auditor = next((a for segment, a in unit.reports if segment == last), None)
    if auditor is None:  # accepted units have one; nothing to carry without it
        return
    leaf = t.audit(round_, miner, index, last, auditor).result_hash
    t.put(carry_key(miner, index), CarryRecord(leaf, unit.commitment.start_step + t.training.steps_per_unit, round_))


def _punish(t: Transition, round_: int, units: list[_Unit]) -> None:
    """Withholding costs the miner what fraud does (burned: a claim is only a word, so
    it earns nothing).  An auditor that passed a segment later proven fraudulent, or
    whose evidence was disputed (it never replayed), is slashed the same, the prover
    taking the bounty."""
    e = t.economics
    for u in units:
        miner, unit = u.outcome.miner, u.outcome.unit
        for _, auditor, prover in u.disputed:
            t.slash(auditor, e.fraud_slash_bps, prover, e.fraud_bounty_bps)
        if u.outcome.status == WITHHELD:
            t.burn_bond(miner, e.fraud_slash_bps)
        fraud = t.fraud_record(round_, miner, unit) if u.outcome.status == SLASHED else None
        if fraud is None:
            continue
        # a delta proven wrong was attested by the last segment's auditors
        passed = min(fraud.segment, t.training.segments - 1)
        for segment, auditor in u.reports:
            if segment == passed:
                t.slash(auditor, e.fraud_slash_bps, fraud.prover, e.fraud_bounty_bps)


def _next_model(t: Transition, round_: int, accepted: list[WorkCommitment]) -> tuple[bytes, int]:
    """(root, eval loss bits) of the next round's model: the outer step over the
    accepted deltas, or the current model if none was accepted or the step would
    harm it (WorkOracle.aggregate's fallback, judged against the current loss)."""
    model = t.model()
    if not accepted:
        return model.root, model.eval_loss_bits
    return t.oracle.aggregate(model.root, [c.delta_hash for c in accepted], model.eval_loss_bits, round_)


def _payments(t: Transition, accepted: list[_Unit], proposer: bytes) -> tuple[Payment, ...]:
    """The round's emission split into its pools: units and audit reports on accepted
    units share theirs equally (remainders are not emitted), the proposer takes its own.
    One payment per (to, reason), in that order, none of zero."""
    e = t.economics
    owed: dict[tuple[bytes, int], int] = collections.defaultdict(int)
    _share(owed, PAID_FOR_UNITS, e.emission_per_round * e.reward_units_bps // BPS,
           [u.outcome.miner for u in accepted])
    _share(owed, PAID_FOR_AUDITS, e.emission_per_round * e.reward_audits_bps // BPS,
           [auditor for u in accepted for auditor in u.auditors])
    owed[(proposer, PAID_AS_PROPOSER)] += e.emission_per_round * e.reward_proposer_bps // BPS
    return tuple(Payment(to, reason, amount) for (to, reason), amount in sorted(owed.items()) if amount)


def _share(owed: dict[tuple[bytes, int], int], reason: int, pool: int, payees: list[bytes]) -> None:
    """Split pool equally among payees, one share per listing."""
    for to in payees:
        owed[(to, reason)] += pool // len(payees)


def _next_committee(t: Transition, round_: int) -> tuple[CommitteeMember, ...]:
    """The committee after round_ if it ends an epoch: members and bonded accounts that
    did verified work in the epoch, ranked by (work, bond) with ties to the smaller key;
    at most a third of the seats (at least one) change hands, an entrant taking a
    leaver's power.  A validator punished for equivocation within the evidence window
    cannot enter.  () if round_ ends no epoch or nothing changes."""
    if (round_ + 1) % t.consensus.epoch_rounds:
        return ()
    epoch = round_ // t.consensus.epoch_rounds
    seated = t.committee().members
    seated_keys = {m.pub_key for m in seated}
    work = t.epoch_work(epoch)
    candidates = seated_keys | {k for k, units in work.items()
                                if units > 0 and t.account(k).bond >= t.economics.min_miner_bond
                                and not barred_from_committee(t, k)}
    ranked = sorted(candidates, key=lambda k: (-work.get(k, 0), -t.account(k).bond, k))
    desired = set(ranked[:t.consensus.committee_size])
    entering = [k for k in ranked if k in desired and k not in seated_keys]
    leaving = [k for k in reversed(ranked) if k in seated_keys and k not in desired]
    swaps = min(max(1, t.consensus.committee_size // 3), len(entering), len(leaving))
    if not swaps:
        return ()
    replaced = dict(zip(leaving[:swaps], entering[:swaps]))
    return tuple(CommitteeMember(replaced.get(m.pub_key, m.pub_key), m.power) for m in seated)
