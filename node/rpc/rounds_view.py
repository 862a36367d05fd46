"""The JSON view of one training round for GET /rounds/{r} (DESIGN.md §6), built from
plain inputs so that it can be checked without a chain.

A unit's status comes from the round's closing block once the round is closed; before
that it is "committed", or "slashed" as soon as a fraud proof against it is recorded.
"""
from __future__ import annotations

import math
from typing import Mapping, Protocol, Sequence

from node.types.blocks import (ACCEPTED, PAID_AS_PROPOSER, PAID_FOR_AUDITS, PAID_FOR_UNITS, REJECTED,
                         SLASHED, WITHHELD, RoundClose)
from node.types.transactions import NO_CARRY, WorkCommitment
from node.uPoW.rounds import RoundSchedule
from node.uPoW.work import float32_from_bits

CLOSED = "closed"
# a unit slashed for withholding shows as slashed: the API's statuses are fixed (DESIGN.md §6)
_STATUS = {ACCEPTED: "accepted", REJECTED: "rejected", SLASHED: "slashed", WITHHELD: "slashed"}
_REASON = {PAID_FOR_UNITS: "units", PAID_FOR_AUDITS: "audits", PAID_AS_PROPOSER: "proposer"}

UnitKey = tuple[bytes, int]  # (miner, unit)


class Fraud(Protocol):
    """A recorded fraud proof against a unit: who proved it, on which segment."""
    prover: bytes
    segment: int


def float32(bits: int) -> float | None:
    """The float32 with these IEEE bits; None for NaN and infinities, which JSON lacks."""
    value = float32_from_bits(bits)
    return value if math.isfinite(value) else None


def round_phase(schedule: RoundSchedule, round_: int, height: int) -> str:
    """Where round_ stands with the chain at height: the phase of the next block while
    the round is under way (the block it takes transactions into), else "closed"."""
    if height >= schedule.close_height(round_):
        return CLOSED
    return schedule.phase(height + 1)


def _unit_status(key: UnitKey, outcomes: Mapping[UnitKey, int] | None,
                 frauds: Mapping[UnitKey, Fraud]) -> str:
    if outcomes is not None:  # closed: a unit the closing block does not list was not accepted
        return _STATUS.get(outcomes.get(key, REJECTED), "rejected")
    return "slashed" if key in frauds else "committed"


def _unit_json(miner: bytes, unit: int, commitment: WorkCommitment, status: str,
               audits: list[dict], fraud: Fraud | None) -> dict:
    trace = commitment.loss_trace
    return {"miner": miner.hex(), "unit": unit, "shard": commitment.shard, "status": status,
            "checkpoint_root": commitment.checkpoint_root.hex(),
            "checkpoint_count": commitment.checkpoint_count,
            "delta_hash": commitment.delta_hash.hex(),
            # the optimizer state the unit started from: None for fresh AdamW moments
            "carried": None if commitment.carried_leaf == NO_CARRY else {
                "checkpoint": commitment.carried_leaf.hex(), "step": commitment.start_step},
            "final_loss": float32(trace[-1]) if trace else None,
            "audits": audits,
            "fraud": None if fraud is None else {"prover": fraud.prover.hex(),
                                                 "segment": fraud.segment}}


def _audits_by_unit(audits: Sequence[tuple[bytes, int, int, bytes]]) -> dict[UnitKey, list[dict]]:
    by_unit: dict[UnitKey, list[dict]] = {}
    for miner, unit, segment, auditor in sorted(audits):
        by_unit.setdefault((miner, unit), []).append({"auditor": auditor.hex(), "segment": segment})
    return by_unit


def round_view(round_: int, schedule: RoundSchedule, height: int,
               commitments: Sequence[tuple[bytes, int, WorkCommitment]],
               audits: Sequence[tuple[bytes, int, int, bytes]],
               frauds: Mapping[UnitKey, Fraud],
               close: RoundClose | None) -> dict:
    """Round round_ (started: its start height ≤ height) as the chain at height sees it.

    commitments are (miner, unit, commitment), audits (miner, unit, segment, auditor),
    frauds the fraud record of each disproven unit, close the closing block's RoundClose
    (None while the round is open)."""
    outcomes = None if close is None else {(o.miner, o.unit): o.status for o in close.units}
    by_unit = _audits_by_unit(audits)
    units = [_unit_json(miner, unit, commitment, _unit_status((miner, unit), outcomes, frauds),
                        by_unit.get((miner, unit), []), frauds.get((miner, unit)))
             for miner, unit, commitment in sorted(commitments, key=lambda c: (c[0], c[1]))]
    return {
        "round": round_, "phase": round_phase(schedule, round_, height),
        "start_height": schedule.start_height(round_),
        "commit_deadline": schedule.commit_deadline(round_),
        "challenge_height": schedule.challenge_height(round_),
        "close_height": schedule.close_height(round_),
        "units": units,
        "rewards": [] if close is None else [
            {"to": p.to.hex(), "reason": _REASON.get(p.reason, "unknown"), "amount": p.amount}
            for p in close.payments],
        "model_root": None if close is None else close.model_root.hex(),
        "eval_loss": None if close is None else float32(close.eval_loss_bits),
    }
