"""The node's WorkOracle: answers the ledger from the local blob store.

It computes in the node's own process: a fraud proof costs one segment's replay,
a round close one outer step and the held-out eval; both are rare and short, and
a validator must not vote before it has the answer.  Closes are memoized, since
the same close is asked for when proposing, checking and finalizing.
"""
from __future__ import annotations

from kernels.backend import Backend, cpu_backend
from node.types.genesis import Genesis
from node.storage.blobstore import BlobCorrupted, BlobNotFound, BlobStore
from node.types.transactions import FraudProof, WorkCommitment
from node.uPoW.aggregation import eval_loss_bits, outer_step
from node.uPoW.assignment import UnitAssignment
from node.uPoW.model_state import ModelState, decode_model, encode_model, genesis_model_root, model_root
from node.uPoW.oracle import WorkUnavailable
from node.uPoW.trainer import Trainer
from node.uPoW.work import decode_delta
from node.uPoW.replay import confirm_fraud

MEMO = 8


class BlobWorkOracle:
    def __init__(self, genesis: Genesis, blobs: BlobStore, backend: Backend | None = None):
        self.genesis = genesis
        self.blobs = blobs
        self.backend = backend if backend is not None else cpu_backend()
        self._trainer: Trainer | None = None  # built on first use: it loads the kernels
        self._closes: dict[tuple[bytes, tuple[bytes, ...]], tuple[bytes, int]] = {}

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
        model = self.model(model_root_)
        return confirm_fraud(self.trainer, model, assignment.data_seed, commitment, proof,
                             self.blob(proof.start_hash))

    def aggregate(self, model_root_: bytes, delta_hashes: list[bytes]) -> tuple[bytes, int]:
        key = (model_root_, tuple(delta_hashes))
        if key not in self._closes:
            model = self.model(model_root_)
            deltas = [decode_delta(self.trainer.layout, self.blob(h)) for h in delta_hashes]
            new_model = outer_step(self.genesis, model, deltas, self.backend)
            blob = encode_model(new_model)
            self.blobs.put(blob)  # the next round's model, served to miners and auditors
            self._closes[key] = (model_root(blob), eval_loss_bits(self.trainer, new_model.params))
            while len(self._closes) > MEMO:
                del self._closes[next(iter(self._closes))]
        return self._closes[key]
