"""Optimizer kernels against torch and float64 references, and their fixed order."""
import math

import numba
import numpy as np
import pytest
import torch

from kernels.fp import fma, kernel
from kernels.optim import (ADAM_CHUNK, NORM_CHUNK, adam_bias_corrections, adamw, adamw_segment,
                           clip_grad_norm, mean_of_deltas, outer_nesterov, sum_of_squares)

RNG = np.random.default_rng(11)


def _random(n: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(n) * scale).astype(np.float32)


def test_adamw_matches_torch_over_several_steps():
    params, m, v = _random(5000), np.zeros(5000, np.float32), np.zeros(5000, np.float32)
    segments = np.array([[0, 3000], [3000, 2000]], np.int64)
    decay = np.array([True, False])
    t_decayed = torch.tensor(params[:3000], requires_grad=True)
    t_plain = torch.tensor(params[3000:], requires_grad=True)
    opt = torch.optim.AdamW([{"params": [t_decayed], "weight_decay": 0.1},
                             {"params": [t_plain], "weight_decay": 0.0}],
                            lr=2e-3, betas=(0.9, 0.95), eps=1e-8)
    f32 = np.float32
    for step in range(1, 6):
        grads = _random(5000)
        adamw(params, grads, m, v, segments, decay, step, f32(2e-3), f32(0.9), f32(0.95),
              f32(1e-8), f32(0.1))
        t_decayed.grad = torch.from_numpy(grads[:3000].copy())
        t_plain.grad = torch.from_numpy(grads[3000:].copy())
        opt.step()
    expected = np.concatenate([t_decayed.detach().numpy(), t_plain.detach().numpy()])
    assert np.abs(params - expected).max() <= 1e-6 * np.abs(expected).max()


def _corrections_step_by_step(beta1: np.float32, beta2: np.float32, steps: list[int]) -> dict:
    p1 = p2 = np.float32(1.0)
    out = {}
    for step in range(max(steps) + 1):
        if step in steps:
            out[step] = (np.float32(1.0) - p1, np.float32(1.0) - p2)
        p1, p2 = np.float32(p1 * beta1), np.float32(p2 * beta2)
    return out


@pytest.mark.parametrize("beta1,beta2", [(0.9, 0.95), (0.9, 0.999), (0.5, 0.9999)])
def test_bias_corrections_are_every_step_s_product_even_where_the_loop_stops_early(beta1, beta2):
    """The early stop at a fixed point gives the bits of all step products: checked below,
    at and far past the steps where the powers reach zero or a stuck subnormal."""
    b1, b2 = np.float32(beta1), np.float32(beta2)
    steps = [0, 1, 2, 10, 100, 1000, 30_000, 200_000, 1_100_000]
    expected = _corrections_step_by_step(b1, b2, steps)
    for step in steps:
        got = adam_bias_corrections(b1, b2, step)
        assert (np.float32(got[0]).view(np.uint32), np.float32(got[1]).view(np.uint32)) == (
            expected[step][0].view(np.uint32), expected[step][1].view(np.uint32)), step


def test_clip_grad_norm_matches_torch():
    grads = _random(20000, 0.3)
    expected = torch.tensor(grads.copy())
    expected.grad = expected.clone()
    torch_norm = torch.nn.utils.clip_grad_norm_([expected], 1.0).item()
    norm = clip_grad_norm(grads, np.float32(1.0))
    assert abs(norm - torch_norm) <= 1e-5 * torch_norm
    assert np.abs(grads - expected.grad.numpy()).max() <= 1e-6


def test_a_norm_below_the_clip_leaves_gradients_untouched():
    grads = _random(100, 0.01)
    before = grads.copy()
    clip_grad_norm(grads, np.float32(10.0))
    assert np.array_equal(grads.view(np.uint32), before.view(np.uint32))


@pytest.mark.parametrize("size", [1, 8191, 8192, 8193, 100_003])
def test_sum_of_squares_bits_do_not_depend_on_threads(size):
    x = _random(size)
    results = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(threads)
        results.append(np.float32(sum_of_squares(x)).view(np.uint32))
    assert results[0] == results[1]
    assert abs(float(sum_of_squares(x)) - float(np.sum(x.astype(np.float64) ** 2))) <= 1e-5 * size


@kernel()
def _sum_of_squares_reference(x):
    """The contract written out plainly: chunk after chunk, each one fma chain."""
    partial = []
    for j in range(0, x.size, NORM_CHUNK):
        s = np.float32(0.0)
        for i in range(j, min(j + NORM_CHUNK, x.size)):
            s = fma(x[i], x[i], s)
        partial.append(s)
    total = np.float32(0.0)
    for s in partial:
        total += s
    return total


@pytest.mark.parametrize("chunks", [0.5, 3, 16, 17.25, 40])
def test_sum_of_squares_runs_the_contract_s_chains(chunks):
    """Chunks side by side, chunks left over from the groups of CHAINS and a short last
    chunk: the bits of one chain per chunk, run one after another, on inputs whose
    rounding shows."""
    x = (_random(int(chunks * NORM_CHUNK)) * np.exp2(RNG.integers(-30, 30, int(chunks * NORM_CHUNK)))).astype(np.float32)
    assert np.float32(sum_of_squares(x)).view(np.uint32) == np.float32(_sum_of_squares_reference(x)).view(np.uint32)


def test_mean_of_deltas_sums_units_in_order():
    deltas = np.stack([_random(1000) for _ in range(5)])
    out = np.empty(1000, np.float32)
    mean_of_deltas(out, deltas)
    expected = deltas[0].copy()
    for row in deltas[1:]:
        expected = expected + row
    expected = expected / np.float32(5)
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))


def test_outer_nesterov_matches_float64_formula():
    weights, momentum, delta = _random(1000), _random(1000, 0.1), _random(1000, 0.01)
    w64, m64, d64 = (a.astype(np.float64) for a in (weights, momentum, delta))
    outer_nesterov(weights, momentum, delta, np.float32(0.7), np.float32(0.9))
    g = -d64
    m64 = 0.9 * m64 + g
    w64 = w64 - 0.7 * (g + 0.9 * m64)
    assert np.abs(momentum - m64).max() <= 1e-6
    assert np.abs(weights - w64).max() <= 1e-6


@numba.njit(error_model="numpy")
def _adamw_reference(params, grads, m, v, lo, hi, lr, beta1, beta2, eps, weight_decay, c1, c2):
    for i in range(lo, hi):
        g = grads[i]
        m[i] = fma(beta1, m[i], (np.float32(1.0) - beta1) * g)
        v[i] = fma(beta2, v[i], (np.float32(1.0) - beta2) * (g * g))
        update = (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)
        params[i] = params[i] - lr * fma(weight_decay, params[i], update)


def test_adamw_in_chunks_gives_the_bits_of_one_element_at_a_time():
    # the update runs in chunks of vectorized views; across chunk edges and for a segment
    # starting and ending inside chunks, each element gets the contract's own bits (the
    # whole arrays compared: elements outside the segment stay put)
    f32 = np.float32
    rng = np.random.default_rng(3)
    n = 3 * ADAM_CHUNK + 17
    params = rng.standard_normal(n).astype(f32)
    grads = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 2, n)).astype(f32)
    m = (rng.standard_normal(n) * 0.01).astype(f32)
    v = (rng.random(n) * 0.001).astype(f32)
    lo, hi = ADAM_CHUNK // 2, n - 5
    args = (lo, hi, f32(0.004), f32(0.9), f32(0.95), f32(1e-8), f32(0.1), f32(0.271), f32(0.0975))
    expected = [a.copy() for a in (params, m, v)]
    _adamw_reference(expected[0], grads, expected[1], expected[2], *args)
    adamw_segment(params, grads, m, v, *args)
    for got, want in zip((params, m, v), expected):
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
