"""A miner's unit of work: train it, and the blobs and commitment that describe it.

A unit trains steps_per_unit steps from the round's model on the unit's data
stream (its seed, from the round's first global step), its AdamW moments fresh or
carried from the miner's last accepted unit.  Its leaves are the start state's hash and
the state hash after every checkpoint_every steps (n segments, n+1 leaves); the checkpoint blobs are the
encoded states, so a leaf is its blob's SHA-256.  Each segment also has the digest of
its last step's gradient, kept by the miner and locked in the commitment
(node/uPoW/evidence.py).  The delta is the end parameters minus the round's, as a
float32 blob.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

import numpy as np

from node.types.merkle import merkle_root
from node.types.transactions import NO_CARRY, WorkCommitment
from node.uPoW.data import UnitStream
from node.uPoW.evidence import evidence_lock
from node.uPoW.model import ParameterLayout
from node.uPoW.model_state import BlobFormatError, ModelState
from node.uPoW.oracle import KERNEL_VERSION
from node.uPoW.state import TrainingState, encode_state
from node.uPoW.trainer import StepResult, Trainer

LEAVES_MAGIC = b"uponode/leaves/v1\x00"
DELTA_MAGIC = b"uponode/delta/v1\x00"
LEAF_SIZE = 32


def encode_leaves(leaves: list[bytes]) -> bytes:
    if any(len(leaf) != LEAF_SIZE for leaf in leaves):
        raise ValueError(f"a leaf is a {LEAF_SIZE}-byte digest")
    return LEAVES_MAGIC + b"".join(leaves)


def decode_leaves(blob: bytes) -> list[bytes]:
    """The leaves of a leaves blob: the start state's hash and at least one segment's."""
    if not blob.startswith(LEAVES_MAGIC):
        raise BlobFormatError("not a leaves blob: bad magic")
    body = blob[len(LEAVES_MAGIC):]
    if len(body) % LEAF_SIZE or len(body) < 2 * LEAF_SIZE:
        raise BlobFormatError(f"leaves blob body of {len(body)} bytes is not 2 or more "
                              f"{LEAF_SIZE}-byte leaves")
    return [bytes(body[i:i + LEAF_SIZE]) for i in range(0, len(body), LEAF_SIZE)]


def encode_delta(delta: np.ndarray) -> bytes:
    if delta.dtype != np.float32 or delta.ndim != 1:
        raise ValueError(f"a delta is a flat float32 array, got {delta.dtype} of shape {delta.shape}")
    return DELTA_MAGIC + np.ascontiguousarray(delta, dtype="<f4").tobytes()


def decode_delta(layout: ParameterLayout, blob: bytes) -> np.ndarray:
    expected = len(DELTA_MAGIC) + 4 * layout.size
    if not blob.startswith(DELTA_MAGIC):
        raise BlobFormatError("not a delta blob: bad magic")
    if len(blob) != expected:
        raise BlobFormatError(f"delta blob of {len(blob)} bytes, expected {expected}")
    delta = np.frombuffer(blob, "<f4", offset=len(DELTA_MAGIC)).astype(np.float32)
    if not np.isfinite(delta).all():
        raise BlobFormatError("delta blob holds NaN or Inf")
    return delta


def unit_delta(model: ModelState, end_params: np.ndarray) -> tuple[bytes, bytes]:
    """(SHA-256, blob) of the delta of a unit that ended at end_params (on the host):
    the delta a commitment names and the blob that serves it."""
    blob = encode_delta(np.subtract(end_params, model.params, dtype=np.float32))
    return hashlib.sha256(blob).digest(), blob


def unit_start_state(trainer: Trainer, model: ModelState, stream: UnitStream,
                     carried: TrainingState | None = None) -> TrainingState:
    """Leaf 0: the round's parameters, at the stream's start and AdamW step, with the
    moments of carried (the end state of the miner's last accepted unit of this index)
    or zero ones."""
    return trainer.initial_state(stream, model.params, carried)


@dataclasses.dataclass
class UnitWork:
    leaves: list[bytes]
    checkpoints: list[bytes]  # the n+1 checkpoint blobs; leaf i is sha256(checkpoints[i])
    leaves_blob: bytes
    checkpoint_root: bytes
    delta_blob: bytes
    delta_hash: bytes
    loss_trace: tuple[int, ...]  # float32 bits of each step's loss
    evidence: tuple[bytes, ...]  # each segment's gradient digest: the miner's secret


def _f32_bits(value: float) -> int:
    return int(np.float32(value).view(np.uint32))


def float32_from_bits(bits: int) -> float:
    """The float32 whose IEEE bits these are (a loss trace entry, an eval loss)."""
    return float(np.uint32(bits).view(np.float32))


def train_unit(trainer: Trainer, model: ModelState, stream: UnitStream,
               carried: TrainingState | None = None,
               on_step: Callable[[StepResult], None] | None = None) -> UnitWork:
    """Train one unit, encoding the state at every leaf (NonFiniteStateError if it fails)."""
    layout = trainer.layout
    state = unit_start_state(trainer, model, stream, carried)
    checkpoints = [encode_state(layout, trainer.host_state(state))]
    leaves = [hashlib.sha256(checkpoints[0]).digest()]
    losses, evidence = [], []
    for _ in range(trainer.genesis.training.steps_per_unit):
        result = trainer.step(state)
        losses.append(_f32_bits(result.loss))
        if result.state_hash is not None:
            # the trainer hashed this state already: only the blob is left to make
            checkpoints.append(encode_state(layout, trainer.host_state(state)))
            leaves.append(bytes.fromhex(result.state_hash))
            evidence.append(result.gradient_digest)
        if on_step is not None:
            on_step(result)
    delta_hash, delta_blob = unit_delta(model, trainer.host_state(state).params)
    leaves_blob = encode_leaves(leaves)
    return UnitWork(leaves=leaves, checkpoints=checkpoints, leaves_blob=leaves_blob,
                    checkpoint_root=merkle_root(leaves), delta_blob=delta_blob,
                    delta_hash=delta_hash, loss_trace=tuple(losses), evidence=tuple(evidence))


def commitment_for(round_: int, unit: int, shard: int, model_root: bytes, work: UnitWork,
                   carried_leaf: bytes = NO_CARRY, start_step: int = 0) -> WorkCommitment:
    return WorkCommitment(round=round_, unit=unit, shard=shard, start_root=model_root,
                          checkpoint_root=work.checkpoint_root,
                          checkpoint_count=len(work.leaves),
                          leaves_hash=hashlib.sha256(work.leaves_blob).digest(),
                          delta_hash=work.delta_hash, loss_trace=work.loss_trace,
                          kernel_version=KERNEL_VERSION,
                          evidence_locks=tuple(evidence_lock(d) for d in work.evidence),
                          carried_leaf=carried_leaf, start_step=start_step)
