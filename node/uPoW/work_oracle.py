"""The node's WorkOracle: answers the ledger from the local blob store.

A round close costs one outer step and the held-out eval, computed in the node's own
process: it is rare and short, and a validator must not vote before it has the answer.
Closes are memoized, since the same close is asked for when proposing, checking and
finalizing.  A fraud proof costs one segment's replay, and anyone can send one: its
verdict is memoized too (node/uPoW/fraud_question.py), and where the oracle is given
replay_elsewhere (a full node's compute worker) a verdict not yet known is computed
there, never in the caller, which meanwhile gets ReplayPending ("not yet").
"""
from __future__ import annotations

from typing import Callable

from kernels.backend import Backend, cpu_backend
from node.types.genesis import Genesis
from node.storage.blobstore import BlobCorrupted, BlobNotFound, BlobStore
from node.types.transactions import NO_CARRY, FraudProof, WorkCommitment
from node.uPoW.aggregation import close_model
from node.uPoW.assignment import UnitAssignment
from node.uPoW.fraud_question import FraudQuestion, ReplayPending, Verdicts
from node.uPoW.model_state import ModelState, decode_model, encode_model, genesis_model_root, model_root
from node.uPoW.oracle import WorkUnavailable
from node.uPoW.trainer import Trainer
from node.uPoW.work import decode_delta
from node.uPoW.replay import confirm_fraud

MEMO = 8


class BlobWorkOracle:
    def __init__(self, genesis: Genesis, blobs: BlobStore, backend: Backend | None = None,
                 replay_elsewhere: Callable[[FraudQuestion], None] | None = None):
        self.genesis = genesis
        self.blobs = blobs
        self.backend = backend if backend is not None else cpu_backend()
        self._trainer: Trainer | None = None  # built on first use: it loads the kernels
        # starts a replay off the caller's thread and later remembers its verdict in
        # self.verdicts; None replays in the caller (tools, tests, a chain checked offline)
        self.replay_elsewhere = replay_elsewhere
        self.verdicts = Verdicts()
        self._closes: dict[tuple[bytes, tuple[bytes, ...], int], tuple[bytes, int]] = {}

    @property
    def trainer(self) -> Trainer:
        if self._trainer is None:
            self._trainer = Trainer(self.genesis, backend=self.backend)
        return self._trainer

    def blob(self, digest: bytes) -> bytes:
        try:
            return self.blobs.get(digest.hex())
        except (BlobNotFound, BlobCorrupted):
            raise WorkUnavailable(digest) from None

    def model(self, root: bytes) -> ModelState:
        return decode_model(self.trainer.layout, self.blob(root))

    def genesis_model_root(self) -> bytes:
        return genesis_model_root(self.genesis)

    def confirm_fraud(self, model_root_: bytes, assignment: UnitAssignment,
                      commitment: WorkCommitment, proof: FraudProof) -> bool:
        stream = assignment.stream(self.genesis.training, commitment.round, commitment.start_step)
        question = FraudQuestion(model_root_, stream, commitment, proof)
        verdict = self.verdicts.get(question)
        if verdict is not None:
            return verdict
        carried = commitment.carried_leaf if proof.segment == 0 and commitment.carried_leaf != NO_CARRY else None
        if self.replay_elsewhere is not None:
            for digest in (model_root_, proof.start_hash, carried):  # what the replay reads
                if digest is not None and not self.blobs.has(digest.hex()):
                    raise WorkUnavailable(digest)
            self.replay_elsewhere(question)
            raise ReplayPending(question)
        verdict = confirm_fraud(self.trainer, self.model(model_root_), stream, commitment, proof,
                                self.blob(proof.start_hash), self.blob(carried) if carried is not None else None)
        self.verdicts.remember(question, verdict)
        return verdict

    def aggregate(self, model_root_: bytes, delta_hashes: list[bytes],
                  loss_bits: int, round_: int) -> tuple[bytes, int]:
        key = (model_root_, tuple(delta_hashes), loss_bits, round_)
        if key not in self._closes:
            model = self.model(model_root_)
            deltas = [decode_delta(self.trainer.layout, self.blob(h)) for h in delta_hashes]
            closed = close_model(self.trainer, model, deltas, loss_bits, round_)
            if closed is None:
                self._closes[key] = (model_root_, loss_bits)  # the round keeps its model
            else:
                new_model, new_loss_bits = closed
                blob = encode_model(new_model)
                self.blobs.put(blob)  # the next round's model, served to miners and auditors
                self._closes[key] = (model_root(blob), new_loss_bits)
            while len(self._closes) > MEMO:
                del self._closes[next(iter(self._closes))]
        return self._closes[key]
