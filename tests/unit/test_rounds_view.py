"""The /rounds/{r} JSON view from plain inputs: phases and heights from the schedule,
unit statuses before and after the closing block, audits, fraud, rewards, losses."""
import dataclasses
import json
import struct

import pytest

from node.types.blocks import (ACCEPTED, PAID_AS_PROPOSER, PAID_FOR_AUDITS, PAID_FOR_UNITS, REJECTED,
                         SLASHED, Payment, RoundClose, UnitOutcome)
from node.rpc.rounds_view import float32, round_phase, round_view
from node.types.transactions import WorkCommitment
from node.uPoW.rounds import RoundSchedule

SCHEDULE = RoundSchedule(round_blocks=10, commit_blocks=4)  # train 1..4, challenge 5, audit 6..9
A, B, C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32


def bits(value: float) -> int:
    return struct.unpack(">I", struct.pack(">f", value))[0]


@dataclasses.dataclass(frozen=True)
class Fraud:
    prover: bytes
    segment: int


def commitment(unit: int, losses: tuple[float, ...] = (3.0, 2.5)) -> WorkCommitment:
    return WorkCommitment(round=1, unit=unit, shard=0, start_root=b"\x01" * 32,
                          checkpoint_root=b"\x02" * 32, checkpoint_count=5, leaves_hash=b"\x03" * 32,
                          delta_hash=b"\x04" * 32, loss_trace=tuple(bits(x) for x in losses),
                          kernel_version=1, evidence_locks=())


# B's unit carries the moments of its last accepted unit's end
COMMITMENTS = [(B, 0, dataclasses.replace(commitment(0), carried_leaf=b"\x05" * 32, start_step=80)),
               (A, 1, commitment(1, ())), (A, 0, commitment(0))]
AUDITS = [(A, 0, 3, C), (A, 0, 1, B), (B, 0, 2, A)]
CLOSE = RoundClose(round=1, units=(UnitOutcome(A, 0, ACCEPTED), UnitOutcome(A, 1, REJECTED),
                                   UnitOutcome(B, 0, SLASHED)),
                   model_root=b"\x09" * 32, eval_loss_bits=bits(2.25),
                   payments=(Payment(A, PAID_FOR_UNITS, 70), Payment(C, PAID_FOR_AUDITS, 20),
                             Payment(B, PAID_AS_PROPOSER, 10)),
                   next_committee=())


def view(height: int, frauds=None, close=None) -> dict:
    return round_view(1, SCHEDULE, height, COMMITMENTS, AUDITS, frauds or {}, close)


@pytest.mark.parametrize("height,phase", [
    (10, "train"), (13, "train"), (14, "challenge"), (15, "audit"), (18, "audit"),
    (19, "aggregate"), (20, "closed"), (35, "closed"),
])
def test_phase_is_the_next_blocks(height, phase):
    assert round_phase(SCHEDULE, 1, height) == phase


def test_round_heights():
    body = view(12)
    assert (body["round"], body["start_height"], body["commit_deadline"], body["challenge_height"],
            body["close_height"]) == (1, 10, 14, 15, 20)


def test_open_round():
    body = view(16, frauds={(B, 0): Fraud(C, 2)})
    assert [(u["miner"], u["unit"], u["status"]) for u in body["units"]] == [
        (A.hex(), 0, "committed"), (A.hex(), 1, "committed"), (B.hex(), 0, "slashed")]
    first = body["units"][0]
    assert first == {"miner": A.hex(), "unit": 0, "shard": 0, "status": "committed",
                     "checkpoint_root": "02" * 32, "checkpoint_count": 5, "delta_hash": "04" * 32,
                     "carried": None, "final_loss": 2.5, "fraud": None,
                     "audits": [{"auditor": B.hex(), "segment": 1}, {"auditor": C.hex(), "segment": 3}]}
    assert body["units"][1]["final_loss"] is None and body["units"][1]["audits"] == []
    assert body["units"][2]["fraud"] == {"prover": C.hex(), "segment": 2}
    assert body["units"][2]["carried"] == {"checkpoint": "05" * 32, "step": 80}
    assert (body["rewards"], body["model_root"], body["eval_loss"]) == ([], None, None)
    json.dumps(body, allow_nan=False)


def test_closed_round_takes_the_closing_blocks_outcomes():
    body = view(20, frauds={(B, 0): Fraud(C, 2)}, close=CLOSE)
    assert body["phase"] == "closed"
    assert [u["status"] for u in body["units"]] == ["accepted", "rejected", "slashed"]
    assert body["rewards"] == [{"to": A.hex(), "reason": "units", "amount": 70},
                               {"to": C.hex(), "reason": "audits", "amount": 20},
                               {"to": B.hex(), "reason": "proposer", "amount": 10}]
    assert body["model_root"] == "09" * 32 and body["eval_loss"] == 2.25


def test_a_unit_the_closing_block_leaves_out_was_not_accepted():
    close = dataclasses.replace(CLOSE, units=CLOSE.units[:1])
    assert [u["status"] for u in view(25, close=close)["units"]] == ["accepted", "rejected", "rejected"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_losses_are_null(value):
    assert float32(bits(value)) is None
    body = round_view(1, SCHEDULE, 20, [(A, 0, commitment(0, (1.0, value)))], [], {},
                      dataclasses.replace(CLOSE, eval_loss_bits=bits(value)))
    assert body["units"][0]["final_loss"] is None and body["eval_loss"] is None
    json.dumps(body, allow_nan=False)


def test_float32_is_exact():
    assert float32(bits(0.1)) == struct.unpack(">f", struct.pack(">f", 0.1))[0]
    assert float32(0) == 0.0 and float32(0x80000000) == 0.0
