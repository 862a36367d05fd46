"""A unit of work: its blobs round-trip and refuse malformed bytes, training it is
deterministic, and its leaves, root and delta agree; the outer step and eval bits."""
import dataclasses
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.net.blob_fetch import MAX_BLOB_BYTES
from node.types.genesis import load_genesis
from node.types.merkle import merkle_root
from node.uPoW.aggregation import eval_loss_bits, outer_step
from node.uPoW.data import UnitStream
from node.uPoW.model import ParameterLayout
from node.uPoW.model_state import BlobFormatError, ModelState, decode_model, encode_model
from node.uPoW.oracle import KERNEL_VERSION
from node.uPoW.state import (NonFiniteStateError, TrainingState, blob_limit, decode_state, encode_state,
                             state_blob_size, state_hash)
from node.uPoW.trainer import Trainer
from node.uPoW.work import (commitment_for, decode_delta, decode_leaves, encode_delta,
                            encode_leaves, train_unit, unit_delta, unit_start_state)

BASE = load_genesis()


@pytest.fixture(scope="module")
def work(trainer, model):
    return train_unit(trainer, model, UnitStream(7))


def _trained_state(trainer: Trainer, model: ModelState, steps: int) -> TrainingState:
    state = unit_start_state(trainer, model, UnitStream(7))
    trainer.train(state, steps)
    return state


def test_state_blob_round_trips_and_is_what_the_hash_digests(trainer, model):
    state = _trained_state(trainer, model, 2)
    blob = encode_state(trainer.layout, state)
    assert hashlib.sha256(blob).hexdigest() == state_hash(trainer.layout, state)
    back = decode_state(trainer.layout, blob)
    assert (back.step, back.data_seed, back.data_cursor) == (2, 7, 2)
    assert encode_state(trainer.layout, back) == blob


def test_the_blob_limit_fits_a_checkpoint_of_any_model_size(trainer, model):
    """Nodes fetch and accept blobs up to the chain's limit: at least MAX_BLOB_BYTES, and
    a whole training state however large the genesis model (a 25M-parameter one is
    306 MB)."""
    blob = encode_state(trainer.layout, unit_start_state(trainer, model, UnitStream(7)))
    assert state_blob_size(trainer.layout) == len(blob)
    assert blob_limit(BASE) == MAX_BLOB_BYTES > len(blob)
    large = dataclasses.replace(BASE, model=dataclasses.replace(
        BASE.model, context_length=256, n_layer=8, n_head=8, n_embd=512))
    size = state_blob_size(ParameterLayout(large.model))
    assert blob_limit(large) == size > 300e6


def test_a_non_finite_state_is_never_encoded(trainer, model):
    state = unit_start_state(trainer, model, UnitStream(7))
    state.adam_v[3] = np.float32(np.inf)
    with pytest.raises(NonFiniteStateError, match="adam_v"):
        encode_state(trainer.layout, state)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b"x" + b[1:], "bad domain"),
    (lambda b: b[:-1], "bytes, expected"),
    (lambda b: b + b"\x00", "bytes, expected"),
    (lambda b: b.replace(b"param/wte.weight", b"param/wte.wEight"), "expected tensor param/wte.weight"),
    (lambda b: b[:-4] + np.float32(np.nan).tobytes(), "NaN or Inf in adam_v"),
])
def test_decode_state_refuses_malformed_blobs(trainer, model, mutate, message):
    blob = encode_state(trainer.layout, unit_start_state(trainer, model, UnitStream(7)))
    with pytest.raises(BlobFormatError, match=message):
        decode_state(trainer.layout, mutate(blob))


def test_a_state_of_another_layout_is_refused(trainer, model):
    blob = encode_state(trainer.layout, unit_start_state(trainer, model, UnitStream(7)))
    with pytest.raises(BlobFormatError, match="expected"):
        decode_state(ParameterLayout(BASE.model), blob)


def test_leaves_and_delta_blobs_round_trip_and_refuse_malformed(trainer):
    leaves = [bytes([i]) * 32 for i in range(4)]
    assert decode_leaves(encode_leaves(leaves)) == leaves
    for bad in (encode_leaves(leaves)[1:], encode_leaves(leaves) + b"x", encode_leaves(leaves[:1])):
        with pytest.raises(BlobFormatError):
            decode_leaves(bad)
    delta = np.arange(trainer.layout.size, dtype=np.float32) * np.float32(-0.5)
    assert np.array_equal(decode_delta(trainer.layout, encode_delta(delta)), delta)
    for bad in (encode_delta(delta)[:-4], b"x" + encode_delta(delta)[1:],
                encode_delta(np.full_like(delta, np.inf))):
        with pytest.raises(BlobFormatError):
            decode_delta(trainer.layout, bad)


def _decoders(trainer: Trainer, model: ModelState, work) -> list:
    """(decode, encode, a valid blob) for every work blob decoder."""
    layout = trainer.layout
    return [
        (lambda b: decode_state(layout, b), lambda s: encode_state(layout, s), work.checkpoints[1]),
        (decode_leaves, encode_leaves, work.leaves_blob),
        (lambda b: decode_delta(layout, b), encode_delta, work.delta_blob),
        (lambda b: decode_model(layout, b), encode_model, encode_model(model)),
    ]


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 3), cuts=st.lists(st.tuples(st.integers(0, 2**31), st.binary(max_size=8)),
                                               max_size=3),
       truncate=st.integers(0, 2**31), extra=st.binary(max_size=8), raw=st.binary(max_size=64))
def test_decoders_give_a_round_trip_or_a_blob_format_error(trainer, model, work, which, cuts,
                                                         truncate, extra, raw):
    decode, encode, blob = _decoders(trainer, model, work)[which]
    mutated = bytearray(blob)
    for position, data in cuts:  # overwrite a few bytes anywhere, headers included
        at = position % len(mutated)
        mutated[at:at + len(data)] = data
    if truncate % 4 == 0:
        del mutated[truncate % len(mutated):]
    for candidate in (bytes(mutated) + extra, raw, blob[:len(blob) // 2] + raw):
        try:
            value = decode(candidate)
        except BlobFormatError:
            continue
        assert encode(value) == candidate


def test_train_unit_is_deterministic_and_follows_the_data_seed(trainer, model, work):
    again = train_unit(trainer, model, UnitStream(7))
    assert again.leaves == work.leaves and again.delta_blob == work.delta_blob
    assert again.loss_trace == work.loss_trace
    other = train_unit(trainer, model, UnitStream(8))
    assert other.leaves[0] != work.leaves[0] and other.leaves[-1] != work.leaves[-1]
    assert other.delta_hash != work.delta_hash


def test_leaves_root_checkpoints_and_delta_agree(trainer, model, work):
    k, steps = trainer.checkpoint_every, trainer.genesis.training.steps_per_unit
    assert len(work.leaves) == len(work.checkpoints) == trainer.genesis.training.segments + 1
    assert work.leaves == [hashlib.sha256(c).digest() for c in work.checkpoints]
    assert [decode_state(trainer.layout, c).step for c in work.checkpoints] == list(range(0, steps + 1, k))
    assert decode_leaves(work.leaves_blob) == work.leaves
    assert work.checkpoint_root == merkle_root(work.leaves)
    start = unit_start_state(trainer, model, UnitStream(7))
    assert work.leaves[0] == bytes.fromhex(state_hash(trainer.layout, start))
    end = _trained_state(trainer, model, steps)
    assert work.leaves[-1] == bytes.fromhex(state_hash(trainer.layout, end))
    assert np.array_equal(decode_delta(trainer.layout, work.delta_blob), end.params - model.params)
    assert work.delta_hash == hashlib.sha256(work.delta_blob).digest()
    assert unit_delta(model, end.params) == (work.delta_hash, work.delta_blob)
    assert len(work.loss_trace) == steps and all(0 < bits < 2**31 for bits in work.loss_trace)


def test_train_unit_reports_every_step(trainer, model):
    seen = []
    train_unit(trainer, model, UnitStream(7), on_step=seen.append)
    assert [r.step for r in seen] == list(range(1, trainer.genesis.training.steps_per_unit + 1))


def test_commitment_for(work):
    c = commitment_for(3, 1, 0, b"\x05" * 32, work)
    assert (c.round, c.unit, c.shard, c.start_root) == (3, 1, 0, b"\x05" * 32)
    assert (c.checkpoint_root, c.checkpoint_count) == (work.checkpoint_root, len(work.leaves))
    assert c.leaves_hash == hashlib.sha256(work.leaves_blob).digest()
    assert (c.delta_hash, c.loss_trace, c.kernel_version) == (work.delta_hash, work.loss_trace,
                                                              KERNEL_VERSION)


def _reference_outer(params, momentum, deltas, lr, mu):
    """The outer step in numpy: float32 sums in order; each fma's product is exact in
    float64 and its sum rounded once there, then to float32."""
    def fma(a, b, c):
        return (a.astype(np.float64) * b + c).astype(np.float32)
    mean = deltas[0].copy()
    for row in deltas[1:]:
        mean = mean + row
    g = -(mean / np.float32(len(deltas)))
    mom = fma(np.float32(mu), momentum, g)
    return params - np.float32(lr) * fma(np.float32(mu), mom, g), mom


def test_outer_step_matches_a_float32_reference_and_leaves_its_inputs(trainer):
    rng = np.random.default_rng(3)
    size = 1000
    model = ModelState(params=rng.standard_normal(size).astype(np.float32),
                       momentum=(rng.standard_normal(size) * 0.1).astype(np.float32))
    before = encode_model(model)
    deltas = [(rng.standard_normal(size) * 0.01).astype(np.float32) for _ in range(3)]
    new = outer_step(trainer.genesis, model, deltas)
    params, momentum = _reference_outer(model.params, model.momentum, deltas,
                                        trainer.genesis.outer.learning_rate,
                                        trainer.genesis.outer.momentum)
    assert np.array_equal(new.momentum.view(np.uint32), momentum.view(np.uint32))
    assert np.array_equal(new.params.view(np.uint32), params.view(np.uint32))
    assert encode_model(model) == before
    with pytest.raises(ValueError, match="at least one delta"):
        outer_step(trainer.genesis, model, [])
    with pytest.raises(ValueError, match="float32 of shape"):
        outer_step(trainer.genesis, model, [deltas[0][:10]])


def test_eval_loss_bits(trainer, model):
    bits = eval_loss_bits(trainer, model.params)
    loss = np.array([bits], np.uint32).view(np.float32)[0]
    assert float(loss) == trainer.eval_loss(model.params)
    assert 4.0 < loss < 7.0  # about ln 256 for a fresh byte-level model
