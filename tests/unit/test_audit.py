"""Audits catch cheating miners and never an honest one.

The cheating miners live here, in the tests: one fakes checkpoints, one trains on
other data, one commits a delta its checkpoints do not give."""
import dataclasses
import hashlib
from typing import Callable

import numpy as np
import pytest

from node.types.merkle import inclusion_proof, merkle_root
from node.types.transactions import FraudProof
from node.uPoW.data import UnitStream
from node.uPoW.model_state import ModelState, encode_model, model_root
from node.uPoW.state import TrainingState, decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import (UnitWork, commitment_for, decode_delta, encode_delta, encode_leaves,
                            train_unit, unit_delta, unit_start_state)
from node.uPoW.evidence import evidence_lock
from node.uPoW.replay import (InvalidCheckpoint, confirm_fraud, delta_from_checkpoint,
                               load_checkpoint, replay_segment)

SEED = UnitStream(7, 80)  # a unit of round 2, 40 steps a unit
OTHER = UnitStream(8, 80)
MINER = b"\x0b" * 32


@pytest.fixture(scope="module")
def honest(trainer, model) -> UnitWork:
    return train_unit(trainer, model, SEED)


def _work(checkpoints: list[bytes], delta_blob: bytes) -> UnitWork:
    leaves = [hashlib.sha256(c).digest() for c in checkpoints]
    return UnitWork(leaves=leaves, checkpoints=checkpoints, leaves_blob=encode_leaves(leaves),
                    checkpoint_root=merkle_root(leaves), delta_blob=delta_blob,
                    delta_hash=hashlib.sha256(delta_blob).digest(), loss_trace=(),
                    evidence=(bytes(32),) * (len(checkpoints) - 1))


def _cheat(trainer: Trainer, model: ModelState, train_seed: UnitStream,
           fake: Callable[[int, TrainingState], TrainingState] = lambda i, s: s,
           label_seed: int = SEED.seed) -> UnitWork:
    """A miner training from the round's model on data stream train_seed, replacing
    the state at leaf i by fake(i, state) and going on from it, and labelling every
    checkpoint with label_seed."""
    state = unit_start_state(trainer, model, train_seed)
    checkpoints = []
    for i in range(trainer.genesis.training.segments + 1):
        if i:
            trainer.train(state, trainer.checkpoint_every)
        state = fake(i, state)
        checkpoints.append(encode_state(trainer.layout, dataclasses.replace(state, data_seed=label_seed)))
    return _work(checkpoints, unit_delta(model, state.params)[1])


def _proof(work: UnitWork, segment: int) -> FraudProof:
    """An auditor's fraud proof against segment (the delta when segment is n)."""
    n = len(work.leaves) - 1
    claimed, end_proof = ((work.delta_hash, ()) if segment == n else
                          (work.leaves[segment + 1], tuple(inclusion_proof(work.leaves, segment + 1))))
    return FraudProof(round=0, miner=MINER, unit=0, segment=segment, start_hash=work.leaves[segment],
                      start_proof=tuple(inclusion_proof(work.leaves, segment)),
                      claimed_end_hash=claimed, end_proof=end_proof, computed_end_hash=b"\x00" * 32)


def _fraud(trainer: Trainer, model: ModelState, work: UnitWork, segment: int) -> bool:
    commitment = commitment_for(0, 0, 0, model_root(encode_model(model)), work)
    return confirm_fraud(trainer, model, SEED, commitment, _proof(work, segment),
                         work.checkpoints[segment])


def test_an_honest_unit_replays_and_is_never_fraud(trainer, model, honest):
    n = trainer.genesis.training.segments
    locks = commitment_for(0, 0, 0, model_root(encode_model(model)), honest).evidence_locks
    assert len(set(honest.evidence)) == n == len(locks)
    for segment in range(n):
        end_hash, _, digest = replay_segment(trainer, model, SEED, segment, honest.checkpoints[segment])
        assert end_hash == honest.leaves[segment + 1]
        # the replay finds the miner's secret, which its commitment locks
        assert digest == honest.evidence[segment] and evidence_lock(digest) == locks[segment]
    assert delta_from_checkpoint(trainer, model, SEED, honest.checkpoints[n]) == (
        honest.delta_hash, honest.delta_blob)
    assert not any(_fraud(trainer, model, honest, s) for s in range(n + 1))


def _lazy(trainer: Trainer, bad: int) -> Callable[[int, TrainingState], TrainingState]:
    """Leaf bad is the state at leaf bad-1 relabelled as trained: a segment skipped."""
    kept: list[TrainingState] = []

    def fake(i: int, state: TrainingState) -> TrainingState:
        if i == bad - 1:
            kept.append(state.copy())
        if i != bad:
            return state
        skipped = kept[0].copy()
        skipped.step = bad * trainer.checkpoint_every
        skipped.data_cursor = SEED.start + skipped.step
        return skipped
    return fake


def _perturbed(model: ModelState, bad: int) -> Callable[[int, TrainingState], TrainingState]:
    """Leaf bad with one weight nudged back toward the round's model: still within what
    honest training can reach (node/uPoW/bounds.py), so only a replay can tell."""
    def fake(i: int, state: TrainingState) -> TrainingState:
        if i == bad:
            state = state.copy()
            state.params[0] += np.float32(1e-3) * np.sign(model.params[0] - state.params[0])
        return state
    return fake


@pytest.mark.parametrize("make_fake", [lambda trainer, model: _lazy(trainer, 2),
                                       lambda trainer, model: _perturbed(model, 2)],
                         ids=["skipped segment", "perturbed state"])
def test_a_faked_checkpoint_is_caught_by_the_segment_before_it(trainer, model, make_fake):
    cheat = _cheat(trainer, model, SEED, make_fake(trainer, model))
    assert replay_segment(trainer, model, SEED, 1, cheat.checkpoints[1])[0] != cheat.leaves[2]
    n = trainer.genesis.training.segments
    assert [_fraud(trainer, model, cheat, s) for s in range(n + 1)] == [False, True, False, False]


def test_training_on_other_data_is_caught_at_the_last_segment(trainer, model):
    n = trainer.genesis.training.segments
    relabelled = _cheat(trainer, model, train_seed=OTHER)
    assert relabelled.leaves[0] == train_unit(trainer, model, SEED).leaves[0]
    assert _fraud(trainer, model, relabelled, n - 1)
    own_seed = _cheat(trainer, model, train_seed=OTHER, label_seed=OTHER.seed)
    with pytest.raises(InvalidCheckpoint, match="data seed"):
        replay_segment(trainer, model, SEED, n - 1, own_seed.checkpoints[n - 1])
    assert _fraud(trainer, model, own_seed, n - 1) and _fraud(trainer, model, own_seed, n)


def test_a_delta_its_checkpoints_do_not_give_is_caught(trainer, model, honest):
    n = trainer.genesis.training.segments
    inflated = encode_delta(np.float32(2) * decode_delta(trainer.layout, honest.delta_blob))
    cheat = _work(honest.checkpoints, inflated)
    assert [_fraud(trainer, model, cheat, s) for s in range(n + 1)] == [False] * n + [True]
    commitment = commitment_for(0, 0, 0, model_root(encode_model(model)), cheat)
    not_committed = dataclasses.replace(_proof(cheat, n), claimed_end_hash=honest.delta_hash)
    assert not confirm_fraud(trainer, model, SEED, commitment, not_committed, cheat.checkpoints[n])


def test_a_start_blob_that_is_not_the_proofs_start_is_refused(trainer, model, honest):
    commitment = commitment_for(0, 0, 0, model_root(encode_model(model)), honest)
    with pytest.raises(ValueError, match="start_hash"):
        confirm_fraud(trainer, model, SEED, commitment, _proof(honest, 1), honest.checkpoints[2])


def test_a_start_that_is_not_the_rounds_model_is_invalid(trainer, model, honest):
    moved = unit_start_state(trainer, model, SEED)
    moved.params[0] = -moved.params[0]
    blob = encode_state(trainer.layout, moved)
    with pytest.raises(InvalidCheckpoint, match="not the unit's start state"):
        load_checkpoint(trainer, model, SEED, 0, blob)
    cheat = _cheat(trainer, model, SEED, lambda i, s: moved.copy() if i == 0 else s)
    assert _fraud(trainer, model, cheat, 0)


@pytest.mark.parametrize("index,blob,message", [
    (1, b"junk", "checkpoint 1: not a training state blob"),
    (2, 1, "at step 2 cursor 82, expected 4 and 84"),
    (1, 2, "at step 4 cursor 84, expected 2 and 82"),
])
def test_a_checkpoint_at_the_wrong_place_is_invalid(trainer, model, honest, index, blob, message):
    blob = honest.checkpoints[blob] if isinstance(blob, int) else blob
    with pytest.raises(InvalidCheckpoint, match=message):
        load_checkpoint(trainer, model, SEED, index, blob)


def test_a_checkpoint_of_another_rounds_place_in_the_schedule_is_invalid(trainer, model, honest):
    """The data cursor is the chain's global step, which sets the learning rate: a miner
    cannot train its unit at an earlier round's (higher) rates."""
    state = decode_state(trainer.layout, honest.checkpoints[1])
    state.data_cursor -= SEED.start
    with pytest.raises(InvalidCheckpoint, match="at step 2 cursor 2, expected 2 and 82"):
        load_checkpoint(trainer, model, SEED, 1, encode_state(trainer.layout, state))


def test_a_unit_that_carries_moments_replays_from_them_and_nothing_else(trainer, model, honest):
    """The next unit of the miner carries the moments and AdamW step of its last accepted
    unit's end: its leaf 0 is checked against that checkpoint, bit for bit.  Claiming the
    carry while starting from fresh moments, or from moments of another checkpoint, is a
    start that is no state of the unit: fraud at segment 0."""
    steps = trainer.genesis.training.steps_per_unit
    end = decode_state(trainer.layout, honest.checkpoints[-1])
    carried_leaf = honest.leaves[-1]
    stream = UnitStream(9, SEED.start + steps, step=end.step)
    work = train_unit(trainer, model, stream, end)
    commitment = commitment_for(3, 0, 0, model_root(encode_model(model)), work, carried_leaf, end.step)
    first = decode_state(trainer.layout, work.checkpoints[0])
    assert first.step == end.step and np.array_equal(first.adam_m, end.adam_m)
    for segment in range(trainer.genesis.training.segments):
        carried = end if segment == 0 else None
        assert replay_segment(trainer, model, stream, segment, work.checkpoints[segment], carried)[0] == \
            work.leaves[segment + 1]
        assert not confirm_fraud(trainer, model, stream, commitment, _proof(work, segment),
                                 work.checkpoints[segment], honest.checkpoints[-1])
    with pytest.raises(InvalidCheckpoint, match="not the unit's start state"):
        load_checkpoint(trainer, model, stream, 0, work.checkpoints[0])  # the carry left out
    # fresh moments with the carry claimed, and the moments of another of the miner's states
    for moments_from in (None, decode_state(trainer.layout, honest.checkpoints[1])):
        cheat = train_unit(trainer, model, stream, moments_from)
        cheat_commitment = commitment_for(3, 0, 0, model_root(encode_model(model)), cheat, carried_leaf, end.step)
        assert confirm_fraud(trainer, model, stream, cheat_commitment, _proof(cheat, 0), cheat.checkpoints[0],
                             honest.checkpoints[-1])
    with pytest.raises(ValueError, match="not the one the commitment names"):
        confirm_fraud(trainer, model, stream, commitment, _proof(work, 0), work.checkpoints[0], honest.checkpoints[1])
