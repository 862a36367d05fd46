"""The inner learning-rate schedule: its values, its bits, and the genesis fields that set it."""
import dataclasses
import json

import numpy as np
import pytest

from node.types.genesis import DEFAULT_GENESIS, GenesisError, load_genesis
from node.uPoW.data import UnitStream
from node.uPoW.schedule import learning_rate
from node.uPoW.trainer import Trainer

GENESIS = load_genesis()


def _training(schedule: str, warmup: int, peak: float = 0.004):
    return dataclasses.replace(GENESIS.training, learning_rate=peak, lr_schedule=schedule, lr_warmup_steps=warmup)


def test_constant_is_the_peak_rate_after_a_linear_warmup():
    training = _training("constant", 4)
    assert [learning_rate(training, s) for s in range(6)] == [
        np.float32(0.001), np.float32(0.002), np.float32(0.003), np.float32(0.004), np.float32(0.004),
        np.float32(0.004)]
    assert learning_rate(_training("constant", 0), 10**9) == np.float32(0.004)


def test_inverse_sqrt_falls_as_one_over_the_root_of_the_step():
    training = _training("inverse_sqrt", 100)
    assert learning_rate(training, 99) == np.float32(0.004)
    assert learning_rate(training, 399) == np.float32(0.002)  # 4x the warmup: half the rate
    assert learning_rate(training, 9_999) == np.float32(0.0004)
    rates = [learning_rate(training, s) for s in range(5_000)]
    assert max(rates) == np.float32(0.004) and all(r > 0 for r in rates)
    peak = rates.index(max(rates))
    assert rates[:peak] == sorted(rates[:peak]) and rates[peak:] == sorted(rates[peak:], reverse=True)
    # a baseline taking four steps per chain step asks between them
    assert learning_rate(training, 399.75) < learning_rate(training, 399.5) < learning_rate(training, 399)


def test_the_rate_is_the_same_float32_everywhere():
    """Only IEEE-rounded + - * / sqrt: pinned bits, as every node must compute them."""
    training = _training("inverse_sqrt", 80, peak=0.002)
    bits = [int(learning_rate(training, s).view(np.uint32)) for s in (0, 79, 80, 1_000, 123_456)]
    assert bits == [0x37D1B717, 0x3B03126F, 0x3B0242AA, 0x3A14378A, 0x385589F6]


def test_the_data_cursor_sets_the_rate_of_a_step():
    """A unit's place in the schedule is its data cursor: Adam's first step moves a
    weight by about its rate (m/sqrt(v) is +-1), so a unit at global step 4,000 moves
    four times as far as one at step 0, inside the warmup."""
    genesis = dataclasses.replace(GENESIS, training=_training("inverse_sqrt", 40))
    trainer = Trainer(genesis)
    start = trainer.initial_state().params
    moved = []
    for stream in (UnitStream(5, 0), UnitStream(5, 4_000)):
        state = trainer.initial_state(stream)
        trainer.step(state)
        moved.append(float(np.abs(trainer.host_state(state).params - start).max()))
    rates = [learning_rate(genesis.training, 0), learning_rate(genesis.training, 4_000)]
    assert rates == [np.float32(1e-4), np.float32(0.00039995002)]
    assert moved == pytest.approx(rates, rel=0.01)


@pytest.mark.parametrize("field,value,message", [
    ("lr_schedule", "cosine", 'training.lr_schedule: "cosine" is not one of constant, inverse_sqrt'),
    ("lr_schedule", 3, "training.lr_schedule: expected a non-empty string"),
    ("lr_warmup_steps", -1, "training.lr_warmup_steps: -1 is out of range"),
    ("lr_warmup_steps", 1.5, "training.lr_warmup_steps: expected an integer"),
])
def test_bad_schedule_fields_are_named(tmp_path, field, value, message):
    raw = json.loads(DEFAULT_GENESIS.read_text())
    raw["training"][field] = value
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(raw))
    (tmp_path / "corpus").symlink_to(DEFAULT_GENESIS.parent / "corpus")
    with pytest.raises(GenesisError, match=message):
        load_genesis(path)
