"""LayerNorm's forward and input gradient, which run rows side by side, and its
parameter gradients give the bits of the contract (the module docstring), written here
plainly: one row at a time, each sum a sequential chain over the channels, and each
channel's parameter gradient a chain over the rows, on row counts that leave a group
part-full and on channel counts of one and of many."""
import math

import numba
import numpy as np
import pytest

from kernels.fp import fma
from kernels.layernorm import (ROWS_SIDE_BY_SIDE, layernorm_backward_input,
                               layernorm_backward_params, layernorm_forward)

F32 = np.float32
EPS = F32(1e-5)


@numba.njit(error_model="numpy")
def _reference_forward(out, mean, rstd, inp, weight, bias):
    N, C = inp.shape
    inv_c = F32(1.0) / F32(C)
    for i in range(N):
        s = F32(0.0)
        for c in range(C):
            s += inp[i, c]
        m = s * inv_c
        v = F32(0.0)
        for c in range(C):
            d = inp[i, c] - m
            v = fma(d, d, v)
        v = v * inv_c
        r = F32(1.0) / math.sqrt(v + EPS)
        for c in range(C):
            out[i, c] = fma((inp[i, c] - m) * r, weight[c], bias[c])
        mean[i] = m
        rstd[i] = r


@numba.njit(error_model="numpy")
def _reference_backward_input(dinp, dout, inp, weight, mean, rstd):
    N, C = inp.shape
    inv_c = F32(1.0) / F32(C)
    for i in range(N):
        dnorm_mean = F32(0.0)
        dnorm_norm_mean = F32(0.0)
        for c in range(C):
            n = (inp[i, c] - mean[i]) * rstd[i]
            dn = weight[c] * dout[i, c]
            dnorm_mean += dn
            dnorm_norm_mean = fma(dn, n, dnorm_norm_mean)
        dnorm_mean = dnorm_mean * inv_c
        dnorm_norm_mean = dnorm_norm_mean * inv_c
        for c in range(C):
            n = (inp[i, c] - mean[i]) * rstd[i]
            dn = weight[c] * dout[i, c]
            dinp[i, c] += ((dn - dnorm_mean) - n * dnorm_norm_mean) * rstd[i]


@numba.njit(error_model="numpy")
def _reference_backward_params(dweight, dbias, dout, inp, mean, rstd):
    N, C = inp.shape
    for c in range(C):
        for i in range(N):
            n = (inp[i, c] - mean[i]) * rstd[i]
            dweight[c] = fma(n, dout[i, c], dweight[c])
            dbias[c] += dout[i, c]


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint32)


R = ROWS_SIDE_BY_SIDE


@pytest.mark.parametrize("rows", [1, R - 1, R, R + 1, 3 * R + 2, 53])
@pytest.mark.parametrize("channels", [1, 7, 128])
def test_rows_side_by_side_give_the_bits_of_one_row_at_a_time(rows, channels):
    rng = np.random.default_rng(rows * 1000 + channels)
    # rows of different scales and offsets, so that every lane's chains differ
    inp = (rng.standard_normal((rows, channels)) * rng.uniform(0.01, 100, (rows, 1))
           + rng.uniform(-10, 10, (rows, 1))).astype(F32)
    weight = rng.standard_normal(channels).astype(F32)
    bias = rng.standard_normal(channels).astype(F32)
    dout = rng.standard_normal((rows, channels)).astype(F32)
    start = rng.standard_normal((rows, channels)).astype(F32)  # dinp accumulates into it

    out, mean, rstd = (np.empty((rows, channels), F32), np.empty(rows, F32), np.empty(rows, F32))
    ref_out, ref_mean, ref_rstd = (np.empty_like(out), np.empty_like(mean), np.empty_like(rstd))
    layernorm_forward(out, mean, rstd, inp, weight, bias)
    _reference_forward(ref_out, ref_mean, ref_rstd, inp, weight, bias)
    assert np.array_equal(_bits(out), _bits(ref_out))
    assert np.array_equal(_bits(mean), _bits(ref_mean))
    assert np.array_equal(_bits(rstd), _bits(ref_rstd))

    dinp, ref_dinp = start.copy(), start.copy()
    layernorm_backward_input(dinp, dout, inp, weight, mean, rstd)
    _reference_backward_input(ref_dinp, dout, inp, weight, ref_mean, ref_rstd)
    assert np.array_equal(_bits(dinp), _bits(ref_dinp))

    dweight, dbias = rng.standard_normal(channels).astype(F32), rng.standard_normal(channels).astype(F32)
    ref_dweight, ref_dbias = dweight.copy(), dbias.copy()
    layernorm_backward_params(dweight, dbias, dout, inp, mean, rstd)
    _reference_backward_params(ref_dweight, ref_dbias, dout, inp, ref_mean, ref_rstd)
    assert np.array_equal(_bits(dweight), _bits(ref_dweight))
    assert np.array_equal(_bits(dbias), _bits(ref_dbias))


def test_a_row_with_an_infinity_leaves_the_rows_beside_it_alone():
    rng = np.random.default_rng(7)
    inp = rng.standard_normal((ROWS_SIDE_BY_SIDE, 32)).astype(F32)
    inp[3, 5] = np.inf
    weight, bias = np.ones(32, F32), np.zeros(32, F32)
    out, mean, rstd = np.empty_like(inp), np.empty(ROWS_SIDE_BY_SIDE, F32), np.empty(ROWS_SIDE_BY_SIDE, F32)
    layernorm_forward(out, mean, rstd, inp, weight, bias)
    assert np.isnan(out[3]).all()
    others = np.delete(np.arange(ROWS_SIDE_BY_SIDE), 3)
    assert np.isfinite(out[others]).all() and np.isfinite(mean[others]).all()
