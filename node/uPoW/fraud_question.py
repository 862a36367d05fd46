"""A fraud proof's replay as a question with one answer, computed once and remembered.

Whether a fraud proof shows fraud depends only on the round's model, the unit's data
stream, the commitment and the proof (whose start checkpoint is content-addressed by
proof.start_hash), so its verdict can be computed anywhere and memoized by the
question's key.  A full node computes it in its compute worker, off the event loop,
before it admits the proof to its mempool; proposing and checking the block that
carries the proof then only looks the verdict up (node/uPoW/work_oracle.py).
"""
from __future__ import annotations

import dataclasses

from node.types.crypto import sha256
from node.types.transactions import FraudProof, WorkCommitment
from node.uPoW.data import UnitStream
from node.uPoW.oracle import WorkUnavailable

MAX_VERDICTS = 4096  # ≈ 40 bytes each; far more proofs than a round's blocks can carry


@dataclasses.dataclass(frozen=True)
class FraudQuestion:
    """Does proof show fraud in the unit committed to by commitment, trained from the
    model with root model_root on stream?"""
    model_root: bytes
    stream: UnitStream
    commitment: WorkCommitment
    proof: FraudProof

    @property
    def key(self) -> bytes:
        return sha256(self.model_root + self.stream.seed.to_bytes(8, "big") + self.stream.start.to_bytes(8, "big")
                      + self.commitment.encode() + self.proof.encode())


class ReplayPending(WorkUnavailable):
    """The verdict is being computed off the event loop: the block or transaction that
    needs it cannot be decided yet, which is not the same as invalid."""

    def __init__(self, question: FraudQuestion):
        super().__init__(question.proof.start_hash)
        self.args = (f"the replay of a fraud proof against unit {question.proof.unit} of miner "
                     f"{question.proof.miner.hex()[:16]}… is under way",)
        self.question = question


class Verdicts:
    """The verdicts known, by question key, the oldest forgotten first."""

    def __init__(self, limit: int = MAX_VERDICTS):
        self.limit = limit
        self._known: dict[bytes, bool] = {}

    def get(self, question: FraudQuestion) -> bool | None:
        return self._known.get(question.key)

    def remember(self, question: FraudQuestion, shows_fraud: bool) -> None:
        self._known[question.key] = shows_fraud
        while len(self._known) > self.limit:
            del self._known[next(iter(self._known))]
