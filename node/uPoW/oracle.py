"""What the ledger asks of the model world when it executes a block.

The ledger is pure integer bookkeeping; its genesis state needs the genesis model's
root, and two of its rules need training compute and blobs: confirming a fraud proof
(re-run one segment, or recompute a delta) and closing a round (the new model root
and its eval loss).  The node supplies a WorkOracle that answers from its blob
store with the deterministic kernels.
"""
from __future__ import annotations

from typing import Protocol

from node.types.transactions import FraudProof, WorkCommitment
from node.uPoW.assignment import UnitAssignment

KERNEL_VERSION = 1  # the kernels' arithmetic contract a commitment was trained under


class WorkUnavailable(Exception):
    """A blob needed to decide is not in this node's store (yet): the block cannot be
    checked now, which is not the same as invalid.  digest names the missing blob."""

    def __init__(self, digest: bytes):
        super().__init__(f"blob {digest.hex()[:16]}… is not in this node's store")
        self.digest = digest


class WorkOracle(Protocol):
    def genesis_model_root(self) -> bytes:
        """The root of the genesis model, which round 0 trains from (the genesis state
        records it; building that model takes the kernels)."""

    def confirm_fraud(self, model_root: bytes, assignment: UnitAssignment,
                      commitment: WorkCommitment, proof: FraudProof) -> bool:
        """True if proof shows fraud: re-executing segment proof.segment from the
        checkpoint proof.start_hash (the model_root model and the assignment's data
        stream for segment 0) does not give proof.claimed_end_hash, or that checkpoint
        is not a state of this unit at that step; for the delta segment, the delta
        from the last checkpoint does not hash to the committed one.  The Merkle
        proofs are the ledger's to check.  WorkUnavailable if a blob is missing."""

    def aggregate(self, model_root: bytes, delta_hashes: list[bytes],
                  loss_bits: int, round_: int) -> tuple[bytes, int]:
        """(new model root, eval loss float32 bits) of round_'s close from the model
        with root model_root, whose eval loss bits are loss_bits (NaN bits if never
        measured): the outer step over the mean of the deltas in the given order (at
        least one), each clipped to a unit's reach at the round's rates; or (model_root, loss_bits), the
        model kept, if that step is non-finite or its loss is non-finite or rises past
        the genesis' outer.max_loss_rise (node/uPoW/aggregation.py).  WorkUnavailable
        if a blob is missing."""
