"""One unit does bounded harm (DESIGN.md §2): honest AdamW states and deltas stay within
node/uPoW/bounds.py's reach, a checkpoint outside it is fraud, a poisoned delta moves
the model by at most its clipped share, and a close that would hurt the model keeps it.
"""
import dataclasses
import hashlib
import re

import numba
import numpy as np
import pytest

from node.storage.blobstore import BlobStore
from node.types.merkle import inclusion_proof, merkle_root
from node.types.transactions import FraudProof
from node.uPoW.aggregation import clipped_deltas, eval_loss_bits, outer_step
from node.uPoW.bounds import STEP_SLACK, _first_beyond, adam_series, adamw_bounds
from node.uPoW.data import eval_batch
from node.uPoW.data import UnitStream
from node.uPoW.model_state import ModelState, encode_model, model_root
from node.uPoW.replay import InvalidCheckpoint, confirm_fraud, load_checkpoint
from node.uPoW.state import TrainingState, decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import (UnitWork, commitment_for, decode_delta, encode_delta, encode_leaves,
                            float32_from_bits, train_unit, unit_delta)
from node.uPoW.work_oracle import BlobWorkOracle

SEEDS = (UnitStream(1), UnitStream(2), UnitStream(3))
UNMEASURED = 0x7FC00000  # the genesis model's loss bits: NaN, never measured
# honest training configurations besides the tiny genesis': a leaf every step (the
# devnet's), and a hot one with beta1^2 > beta2, strong decay and clipping that bites
VARIANTS = {
    "tiny": {},
    "a leaf every step": dict(checkpoint_every=1),
    "hot": dict(learning_rate=0.05, weight_decay=1.0, adam_beta2=0.5, grad_clip=0.05,
                checkpoint_every=1, steps_per_unit=12),
    # a rate that warms up and falls within the unit: the bounds, at the peak rate, hold
    "scheduled": dict(lr_schedule="inverse_sqrt", lr_warmup_steps=3, checkpoint_every=1),
}


def _with_training(trainer: Trainer, **changes) -> Trainer:
    genesis = trainer.genesis
    return Trainer(dataclasses.replace(genesis, training=dataclasses.replace(genesis.training,
                                                                             **changes)))


def _bound_use(trainer: Trainer, start: np.ndarray, state: TrainingState) -> dict[str, float]:
    """The largest share of each bound that state uses over its coordinates."""
    bounds = adamw_bounds(trainer.genesis.training, trainer.genesis.model)
    first = state.data_cursor - state.step
    limits = bounds.limits(state.step, first)
    m, v = np.abs(state.adam_m.astype(np.float64)), state.adam_v.astype(np.float64)
    moved = np.abs(state.params.astype(np.float64) - start.astype(np.float64))
    return {"params": float((moved / bounds.reach(start, state.step, first)).max()),
            "adam_m": float(m.max() / limits.m_max), "adam_v": float(v.max() / limits.v_max),
            "adam_m/sqrt(adam_v)": float((m / (limits.m_per_sqrt_v * np.sqrt(v)
                                                + limits.m_floor)).max())}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_honest_checkpoint_and_delta_is_within_bounds(trainer, model, variant):
    trainer = _with_training(trainer, **VARIANTS[variant])
    bounds = adamw_bounds(trainer.genesis.training, trainer.genesis.model)
    worst: dict[str, float] = {}
    for _ in range(3):  # three rounds: later ones start from a trained model with momentum
        works = [train_unit(trainer, model, seed) for seed in SEEDS]
        deltas = [decode_delta(trainer.layout, w.delta_blob) for w in works]
        for seed, work, delta in zip(SEEDS, works, deltas):
            for index, blob in enumerate(work.checkpoints[1:], 1):
                state = load_checkpoint(trainer, model, seed, index, blob)  # not refused
                for bound, use in _bound_use(trainer, model.params, state).items():
                    worst[bound] = max(worst.get(bound, 0.0), use)
            assert bounds.clip_deltas(model.params, [delta], 0)[0].tobytes() == delta.tobytes()
        model = outer_step(trainer.genesis, model, deltas)
    print(f"\n{variant}: largest share of each bound an honest state uses: "
          + ", ".join(f"{bound} {use:.6f} (margin {1 - use:.2e})" for bound, use in worst.items()))
    assert max(worst.values()) < 1.0
    if trainer.genesis.training.lr_schedule == "constant":
        assert worst["params"] > 0.99  # tight: a steady gradient sign nearly reaches it


@pytest.fixture(scope="module")
def honest_work(trainer, model) -> UnitWork:
    return train_unit(trainer, model, SEEDS[0])


def _jumped(trainer: Trainer, model: ModelState, forge) -> UnitWork:
    """Attack 1: an honest unit whose checkpoint n-1 is replaced by forge(state), the
    last segment trained honestly from it."""
    honest = train_unit(trainer, model, SEEDS[0])
    n = trainer.genesis.training.segments
    state = forge(decode_state(trainer.layout, honest.checkpoints[n - 1]))
    checkpoints = honest.checkpoints[:n - 1] + [encode_state(trainer.layout, state)]
    trainer.train(state, trainer.checkpoint_every)
    end = trainer.host_state(state)
    checkpoints.append(encode_state(trainer.layout, end))
    leaves = [hashlib.sha256(c).digest() for c in checkpoints]
    delta_hash, delta_blob = unit_delta(model, end.params)
    return UnitWork(leaves=leaves, checkpoints=checkpoints, leaves_blob=encode_leaves(leaves),
                    checkpoint_root=merkle_root(leaves), delta_blob=delta_blob,
                    delta_hash=delta_hash, loss_trace=honest.loss_trace, evidence=honest.evidence)


def _moments(value: float):
    def forge(state: TrainingState) -> TrainingState:
        state.adam_m[:] = np.float32(value)
        state.adam_v[:] = np.float32(value)
        return state
    return forge


def _moved(state: TrainingState) -> TrainingState:
    state.params += np.float32(0.5)
    return state


def _momentum_without_variance(state: TrainingState) -> TrainingState:
    # each within its own bound, but no gradient history gives both: the next update
    # would be m / eps, a jump of 10^7 learning rates
    state.adam_m[:] = np.float32(0.1)
    state.adam_v[:] = np.float32(0.0)
    return state


def _negative_variance(state: TrainingState) -> TrainingState:
    state.adam_v[0] = np.float32(-1e-6)
    return state


@pytest.mark.parametrize("forge,message", [
    (_moments(1e30), "adam_m beyond"),
    (_moved, "params move beyond their 2-step reach"),
    (_momentum_without_variance, r"adam_m beyond K_s \* sqrt\(adam_v\)"),
    (_negative_variance, "adam_v is negative"),
], ids=["moments of 1e30", "weights moved far", "momentum without variance", "negative variance"])
def test_a_checkpoint_out_of_reach_is_refused(trainer, model, honest_work, forge, message):
    state = forge(decode_state(trainer.layout, honest_work.checkpoints[1]))
    with pytest.raises(InvalidCheckpoint, match=message):
        load_checkpoint(trainer, model, SEEDS[0], 1, encode_state(trainer.layout, state))


def test_late_in_the_schedule_the_reach_shrinks_with_the_rates(trainer, model):
    """A unit at global step 10,000 of an inverse-sqrt schedule steps at 1/58 of the peak
    rate: its honest states stay inside the reach of its own rates, and a checkpoint
    moved half the peak rate's reach, which a bound at the peak rate would pass, is no
    state of it (the poisoner's room shrinks as the honest miners' does)."""
    trainer = _with_training(trainer, lr_schedule="inverse_sqrt", lr_warmup_steps=3)
    bounds = adamw_bounds(trainer.genesis.training, trainer.genesis.model)
    late = UnitStream(1, 10_000)
    work = train_unit(trainer, model, late)
    for index, blob in enumerate(work.checkpoints[1:], 1):
        load_checkpoint(trainer, model, late, index, blob)  # not refused
    steps = trainer.checkpoint_every
    peak_reach, own_reach = bounds.reach(model.params, steps, 0), bounds.reach(model.params, steps, late.start)
    assert (own_reach < peak_reach / 20).all()
    forged = decode_state(trainer.layout, work.checkpoints[1])
    forged.params = (model.params + 0.5 * peak_reach).astype(np.float32)
    with pytest.raises(InvalidCheckpoint, match="params move beyond their 2-step reach"):
        load_checkpoint(trainer, model, late, 1, encode_state(trainer.layout, forged))
    # a round's close clips its deltas at the round's own rates
    huge = [np.full(model.params.size, np.float32(1.0))]
    round_ = late.start // trainer.genesis.training.steps_per_unit
    late_clip = clipped_deltas(trainer.genesis, model, huge, round_)[0]
    assert (late_clip < clipped_deltas(trainer.genesis, model, huge, 0)[0] / 20).all()


@pytest.mark.parametrize("forge", [_moments(1e30), _moved, _momentum_without_variance],
                         ids=["moments of 1e30", "weights moved far", "momentum without variance"])
def test_the_checkpoint_jump_is_proven_fraud_by_the_last_segment(trainer, model, forge):
    trainer = _with_training(trainer, checkpoint_every=1)  # the devnet's: one step per segment
    work = _jumped(trainer, model, forge)
    n = trainer.genesis.training.segments
    # the always-drawn last segment replays to the committed leaf n, yet it is fraud:
    # its start is no state honest training reaches
    leaves = work.leaves
    proof = FraudProof(round=0, miner=b"\x0b" * 32, unit=0, segment=n - 1, start_hash=leaves[n - 1],
                       start_proof=tuple(inclusion_proof(leaves, n - 1)), claimed_end_hash=leaves[n],
                       end_proof=tuple(inclusion_proof(leaves, n)), computed_end_hash=bytes(32))
    commitment = commitment_for(0, 0, 0, model_root(encode_model(model)), work)
    assert confirm_fraud(trainer, model, SEEDS[0], commitment, proof, work.checkpoints[n - 1])


@pytest.fixture
def oracle(trainer, tmp_path) -> BlobWorkOracle:
    return BlobWorkOracle(trainer.genesis, BlobStore(tmp_path / "blobs"))


def _put_model(oracle: BlobWorkOracle, model: ModelState) -> bytes:
    return bytes.fromhex(oracle.blobs.put(encode_model(model)))


def _put_deltas(oracle: BlobWorkOracle, deltas: list[np.ndarray]) -> list[bytes]:
    return [bytes.fromhex(oracle.blobs.put(encode_delta(d))) for d in deltas]


@pytest.fixture(scope="module")
def honest_deltas(trainer, model) -> list[np.ndarray]:
    return [decode_delta(trainer.layout, train_unit(trainer, model, seed).delta_blob)
            for seed in SEEDS]


def test_honest_closes_are_the_plain_outer_step(trainer, model, oracle, honest_deltas):
    root, loss_bits, plain, deltas = _put_model(oracle, model), UNMEASURED, model, honest_deltas
    for close in range(2):  # the second is judged against the first's measured loss
        new_root, new_bits = oracle.aggregate(root, _put_deltas(oracle, deltas), loss_bits, 0)
        plain = outer_step(trainer.genesis, plain, deltas)
        assert new_root == model_root(encode_model(plain))
        assert new_bits == eval_loss_bits(trainer, plain.params)
        if close:
            assert float32_from_bits(new_bits) < float32_from_bits(loss_bits)
        root, loss_bits = new_root, new_bits
        deltas = [decode_delta(trainer.layout, train_unit(trainer, plain, seed).delta_blob)
                  for seed in SEEDS]


def test_a_poisoned_delta_among_honest_ones_moves_the_model_a_bounded_amount(
        trainer, model, oracle, honest_deltas):
    genesis = trainer.genesis
    signs = np.where(np.arange(model.params.size) % 2, 1, -1).astype(np.float32)
    poison = signs * np.float32(3e38)  # huge but finite
    unclipped = outer_step(genesis, model, honest_deltas + [poison, poison])
    assert not np.isfinite(unclipped.params).all()  # what the blind mean did
    root = _put_model(oracle, model)
    new_root, loss_bits = oracle.aggregate(root, _put_deltas(oracle, honest_deltas + [poison, poison]),
                                           UNMEASURED, 0)
    assert new_root != root and np.isfinite(float32_from_bits(loss_bits))
    poisoned = oracle.model(new_root)
    assert np.isfinite(poisoned.params).all() and np.isfinite(poisoned.momentum).all()
    # against the same close with the poisoner's deltas at zero: each poisoned delta
    # moves the mean by at most its clip, which the outer step scales by lr (1 + momentum)
    zero = np.zeros_like(poison)
    twin = outer_step(genesis, model, honest_deltas + [zero, zero])
    limit = np.abs(clipped_deltas(genesis, model, [poison], 0)[0]).astype(np.float64)
    scale = genesis.outer.learning_rate * (1 + genesis.outer.momentum) * 2 / (len(SEEDS) + 2)
    effect = np.abs(poisoned.params.astype(np.float64) - twin.params)
    assert (effect <= scale * limit * (1 + 1e-5) + 1e-7).all()
    # and the minority's deltas are no longer than twice the honest median's, the honest
    # ones untouched, so the poison pulls no harder than two honest units could
    rows = clipped_deltas(genesis, model, honest_deltas + [poison, poison], 0)
    norms = [float(np.linalg.norm(row.astype(np.float64))) for row in rows]
    median = sorted(norms)[len(SEEDS) - 1]  # the lower median of five: an honest unit's
    assert median == max(norms[:len(SEEDS)])
    assert all(np.array_equal(row, d) for row, d in zip(rows, honest_deltas))
    assert norms[-1] <= 2 * median * (1 + 1e-6) and norms[-2] == norms[-1]
    assert effect.max() > 0  # bounded, not ignored


def test_a_delta_far_longer_than_the_median_is_scaled_to_twice_its_norm(trainer, model, honest_deltas):
    # small deltas, as a larger model's are against their reach, and one as far as it goes
    short = [d * np.float32(0.1) for d in honest_deltas]
    long = clipped_deltas(trainer.genesis, model, [np.full_like(short[0], np.float32(1e30))], 0)[0]
    rows = clipped_deltas(trainer.genesis, model, [*short, long], 0)
    norms = [float(np.linalg.norm(row.astype(np.float64))) for row in rows]
    assert all(np.array_equal(row, d) for row, d in zip(rows, short))
    assert float(np.linalg.norm(long.astype(np.float64))) > 2 * sorted(norms[:3])[1]
    assert norms[-1] == pytest.approx(2 * sorted(norms[:3])[1], rel=1e-6)


def test_fewer_than_three_units_are_clipped_coordinate_wise_only(trainer, model, honest_deltas):
    genesis = trainer.genesis
    poison = np.full(model.params.size, np.float32(3e38))
    [honest, clipped] = clipped_deltas(genesis, model, [honest_deltas[0], poison], 0)
    reach = clipped_deltas(genesis, model, [poison], 0)[0]
    assert np.array_equal(honest, honest_deltas[0]) and np.array_equal(clipped, reach)


ASCENT_SHARE = 0.5  # of the clip: a full one overshoots the loss's rise on this tiny model


def _loss_ascent(trainer: Trainer, model: ModelState) -> np.ndarray:
    """A delta pushing every weight up the held-out loss, half as far as its clip allows."""
    grads, total = trainer.backend.zeros(model.params.size), np.zeros(model.params.size, np.float32)
    n = trainer.genesis.eval.batches
    for index in range(n):
        tokens, targets = eval_batch(trainer.corpus, index, n, trainer.batch_size, trainer.seq_len)
        trainer.model.forward(model.params, tokens, targets)
        trainer.backend.fill_zero(grads)
        trainer.model.backward(grads)
        total += grads
    reach = adamw_bounds(trainer.genesis.training, trainer.genesis.model).reach(
        model.params, trainer.genesis.training.steps_per_unit, 0, None)
    return (np.sign(total) * ASCENT_SHARE * reach).astype(np.float32)


def test_a_close_whose_loss_rises_past_the_bound_keeps_the_model(trainer, model, tmp_path):
    ascent = _loss_ascent(trainer, model)
    measured = eval_loss_bits(trainer, model.params)
    root = model_root(encode_model(model))

    def close(max_loss_rise: float, loss_bits: int) -> tuple[bytes, int]:
        genesis = dataclasses.replace(trainer.genesis, outer=dataclasses.replace(
            trainer.genesis.outer, max_loss_rise=max_loss_rise))
        oracle = BlobWorkOracle(genesis, BlobStore(tmp_path / f"blobs-{max_loss_rise}-{loss_bits}"))
        assert _put_model(oracle, model) == root
        return oracle.aggregate(root, _put_deltas(oracle, [ascent]), loss_bits, 0)

    devnet_rise = trainer.genesis.outer.max_loss_rise
    new_root, new_bits = close(devnet_rise, measured)
    rise = float32_from_bits(new_bits) - float32_from_bits(measured)
    # the clip alone keeps one unit's ascent under the devnet's bound: the close applies it
    assert new_root != root and 0.01 < rise <= devnet_rise
    assert close(rise / 2, measured) == (root, measured)  # the same close under a tighter bound: kept
    assert close(rise / 2, UNMEASURED)[0] == new_root  # an unmeasured loss (the genesis model's) bounds no rise


def test_a_close_that_would_overflow_keeps_the_model(trainer, oracle):
    size = trainer.layout.size
    edge = ModelState(params=np.full(size, 3e38, np.float32), momentum=np.full(size, -3e38, np.float32))
    root = _put_model(oracle, edge)
    assert not np.isfinite(outer_step(trainer.genesis, edge, [np.zeros(size, np.float32)]).params).all()
    assert oracle.aggregate(root, _put_deltas(oracle, [np.zeros(size, np.float32)]), UNMEASURED, 0) == (
        root, UNMEASURED)


def test_the_bound_check_rounds_every_operation_alone(trainer, model, honest_work):
    """_first_beyond is compiled code on the consensus path: float64, but no fast-math
    flag, no contraction into a fused multiply-add, and no library math but sqrt
    (correctly rounded), so every node computes the same limits numpy would."""
    load_checkpoint(trainer, model, SEEDS[0], 1, honest_work.checkpoints[1])  # compiles it
    fresh = numba.njit(error_model="numpy")(_first_beyond.py_func)
    assert _first_beyond.signatures and not _first_beyond.targetoptions.get("fastmath")
    for signature in _first_beyond.signatures:
        fresh.compile(signature)
        llvm = fresh.inspect_llvm(signature)
        assert re.search(r"@(?:llvm\.)?sqrt(?:\.f64)?\(", llvm)
        assert not re.findall(r"(?:fadd|fsub|fmul|fdiv) (?:fast|contract|reassoc|afn|arcp|nnan|ninf|nsz)\b"
                              r"|@llvm\.(?:fma|fmuladd|exp|log|pow|sin|cos)\w*\."
                              r"|@(?:exp|log|pow|sin|cos|tan|cbrt|hypot)\w*\(", llvm)


def test_units_that_carry_moments_stay_within_their_bounds(trainer, model):
    """Five units in a row, each carrying the moments and AdamW step of the one before,
    each from the model the last close made: every checkpoint is within the bounds at
    its AdamW step, and no delta is changed by the close's clip."""
    bounds = adamw_bounds(trainer.genesis.training, trainer.genesis.model)
    steps = trainer.genesis.training.steps_per_unit
    carried = None
    for round_ in range(5):
        stream = UnitStream(round_ + 1, round_ * steps, carried.step if carried else 0)
        work = train_unit(trainer, model, stream, carried)
        for index, blob in enumerate(work.checkpoints[1:], 1):
            load_checkpoint(trainer, model, stream, index, blob)  # not refused
        delta = decode_delta(trainer.layout, work.delta_blob)
        assert bounds.clip_deltas(model.params, [delta], stream.start)[0].tobytes() == delta.tobytes()
        carried = decode_state(trainer.layout, work.checkpoints[-1])
        model = outer_step(trainer.genesis, model, [delta])
    assert carried.step == 5 * steps


def test_the_adamw_series_is_constant_once_it_converges(trainer):
    """A unit a million steps into a miner's moments is bounded at once, as tightly as
    one some thousand steps in, and never above the series' largest term."""
    series = adam_series(trainer.genesis.training)
    late = [series.update(t) for t in (10_000, 1_000_000, 10**9)]
    assert len(set(late)) == 1 and late[0] <= series.update_sup()
    assert series.update(1) < late[0]  # the first steps' bias correction bounds them tighter
    assert series.growth(10**9) <= 1.0 + STEP_SLACK * 25  # the rounding slack forgets, as m and v do
