"""Audits: re-execute a segment of a unit from its checkpoint, recompute a delta,
and decide whether a fraud proof shows fraud (WorkOracle.confirm_fraud's meaning).

A checkpoint is only trusted as far as it is checked: it must decode (finite), sit at
its leaf's step and data cursor, carry the unit's data seed, and leaf 0 must be exactly the
unit's start state, so a miner cannot hide a bad start or another data stream.  A later
leaf must be a state honest AdamW can reach in its steps from the round's model
(node/uPoW/bounds.py): parameters within reach, moments within what clipped gradients
give, so a forged checkpoint cannot jump the unit anywhere (moments of 1e30, far weights).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from node.types.transactions import NO_CARRY, FraudProof, WorkCommitment
from node.uPoW.bounds import adamw_bounds
from node.uPoW.data import UnitStream
from node.uPoW.model_state import BlobFormatError, ModelState
from node.uPoW.state import NonFiniteStateError, TrainingState, decode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import unit_delta


class InvalidCheckpoint(Exception):
    """A checkpoint blob that is not a state of this unit at its leaf's step."""


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _is_start(state: TrainingState, model: ModelState, carried: TrainingState | None) -> bool:
    # bit equality (so -0.0 is not 0.0), as equality of the states' hashes would be
    if not _same_bits(state.params, model.params):
        return False
    if carried is None:
        return not state.adam_m.view(np.uint32).any() and not state.adam_v.view(np.uint32).any()
    return _same_bits(state.adam_m, carried.adam_m) and _same_bits(state.adam_v, carried.adam_v)


def load_checkpoint(trainer: Trainer, model: ModelState, stream: UnitStream, index: int,
                    blob: bytes, carried: TrainingState | None = None) -> TrainingState:
    """The state of leaf index decoded from blob, on the trainer's backend;
    InvalidCheckpoint unless it is a state of this unit at that leaf.  Leaf 0 must hold
    the round's parameters and the moments of carried (the checkpoint the commitment
    names, decoded, at stream.step), or zero moments when it names none."""
    n = trainer.genesis.training.segments
    if not 0 <= index <= n:
        raise ValueError(f"leaf {index} of a unit of {n} segments")
    try:
        state = decode_state(trainer.layout, blob)
    except BlobFormatError as exc:
        raise InvalidCheckpoint(f"checkpoint {index}: {exc}") from None
    step = index * trainer.checkpoint_every
    if state.step != stream.step + step or state.data_cursor != stream.start + step:
        raise InvalidCheckpoint(f"checkpoint {index} is at step {state.step} cursor "
                                f"{state.data_cursor}, expected {stream.step + step} and {stream.start + step}")
    if state.data_seed != stream.seed:
        raise InvalidCheckpoint(f"checkpoint {index} trains data seed {state.data_seed}, "
                                f"the unit's is {stream.seed}")
    if index == 0 and not _is_start(state, model, carried):
        raise InvalidCheckpoint("checkpoint 0 is not the unit's start state")
    if index > 0:
        genesis = trainer.genesis
        problem = adamw_bounds(genesis.training, genesis.model).violation(model.params, state, stream.step)
        if problem is not None:
            raise InvalidCheckpoint(f"checkpoint {index} is out of honest reach: {problem}")
    to_device = trainer.backend.to_device
    return dataclasses.replace(state, params=to_device(state.params),
                               adam_m=to_device(state.adam_m), adam_v=to_device(state.adam_v))


def replay_segment(trainer: Trainer, model: ModelState, stream: UnitStream, segment: int,
                   start_blob: bytes, carried: TrainingState | None = None) -> tuple[bytes, TrainingState, bytes]:
    """Re-execute segment from its start checkpoint (leaf segment): the leaf digest it
    gives, the end state on the trainer's backend, and the segment's gradient digest
    (node/uPoW/evidence.py).  InvalidCheckpoint if the start is not a state of the
    unit; NonFiniteStateError if training from it fails."""
    n = trainer.genesis.training.segments
    if not 0 <= segment < n:
        raise ValueError(f"segment {segment} of a unit of {n} segments")
    state = load_checkpoint(trainer, model, stream, segment, start_blob, carried)
    results = trainer.train(state, trainer.checkpoint_every)
    end = results[-1]  # a checkpoint step: the trainer hashed its state and gradient
    return bytes.fromhex(end.state_hash), state, end.gradient_digest


def delta_from_checkpoint(trainer: Trainer, model: ModelState, stream: UnitStream,
                          last_blob: bytes) -> tuple[bytes, bytes]:
    """(delta hash, delta blob) of the unit's last checkpoint."""
    last = trainer.genesis.training.segments
    state = load_checkpoint(trainer, model, stream, last, last_blob)
    return unit_delta(model, trainer.backend.to_host(state.params))


def carried_state(trainer: Trainer, commitment: WorkCommitment, blob: bytes | None) -> TrainingState | None:
    """The state whose moments the unit's leaf 0 carries, decoded from blob (the
    checkpoint commitment.carried_leaf names); None for a unit that carries none."""
    if commitment.carried_leaf == NO_CARRY:
        return None
    if blob is None or hashlib.sha256(blob).digest() != commitment.carried_leaf:
        raise ValueError("the carried checkpoint is not the one the commitment names")
    return decode_state(trainer.layout, blob)  # a ledger-recorded end state: it decodes


def confirm_fraud(trainer: Trainer, model: ModelState, stream: UnitStream,
                  commitment: WorkCommitment, proof: FraudProof, start_blob: bytes,
                  carried_blob: bytes | None = None) -> bool:
    """True if proof shows fraud in the unit (see WorkOracle.confirm_fraud); start_blob
    is the checkpoint proof.start_hash names, and for segment 0 of a unit that carries
    moments, carried_blob the checkpoint they come from.  The Merkle proofs are the
    caller's."""
    n = trainer.genesis.training.segments
    if commitment.checkpoint_count != n + 1:
        raise ValueError(f"a commitment of {commitment.checkpoint_count} leaves, a unit has {n + 1}")
    if hashlib.sha256(start_blob).digest() != proof.start_hash:
        raise ValueError("start_blob is not the checkpoint proof.start_hash names")
    if not 0 <= proof.segment <= n:
        raise ValueError(f"segment {proof.segment} of a unit of {n} segments")
    if proof.segment == n and proof.claimed_end_hash != commitment.delta_hash:
        return False  # the proof disputes something the miner never committed to
    try:
        if proof.segment == n:
            delta_hash, _ = delta_from_checkpoint(trainer, model, stream, start_blob)
            return delta_hash != commitment.delta_hash
        carried = carried_state(trainer, commitment, carried_blob) if proof.segment == 0 else None
        end_hash, _, _ = replay_segment(trainer, model, stream, proof.segment, start_blob, carried)
        return end_hash != proof.claimed_end_hash
    except (InvalidCheckpoint, NonFiniteStateError):
        # a state that is not the unit's, or one whose honest replay fails, was never
        # a valid leaf to commit to
        return True
