"""LayerNorm over the channel dimension, forward and backward (llm.c's formulation).

Each row's mean and variance are sequential sums over channels; the weight and
bias gradients are per-channel sequential sums over rows, computed in their own
pass so that the rows never race.
"""
import math

import numba
import numpy as np

from kernels.fp import fma, kernel

EPS = np.float32(1e-5)
ONE = np.float32(1.0)
ZERO = np.float32(0.0)


ROW_LANES = 16  # rows whose channel sums advance side by side, one per vector lane


@kernel(inline="always")
def _transpose_rows(tile, x, i0, rows):
    """tile[c, lane] = x[i0 + lane, c]: a group's rows as columns, so that the lanes of
    one channel lie together."""
    C = x.shape[1]
    for lane in range(rows):
        for c in range(C):
            tile[c, lane] = x[i0 + lane, c]


@kernel(parallel=True)
def layernorm_forward(out, mean, rstd, inp, weight, bias):
    """out = (inp - mean) * rstd * weight + bias per row.  inp, out (N,C); mean, rstd (N,).

    Each row's mean and variance are sequential chains over its channels, latency-bound
    if run alone: ROW_LANES rows run side by side instead, row lane's chains in lane
    lane (the same chains, so the same bits)."""
    N, C = inp.shape
    inv_c = ONE / np.float32(C)
    for group in numba.prange((N + ROW_LANES - 1) // ROW_LANES):
        i0 = group * ROW_LANES
        rows = min(ROW_LANES, N - i0)
        tile = np.empty((C, ROW_LANES), np.float32)
        _transpose_rows(tile, inp, i0, rows)
        s = np.zeros(ROW_LANES, np.float32)
        for c in range(C):
            for lane in range(rows):
                s[lane] += tile[c, lane]
        m = np.empty(ROW_LANES, np.float32)
        v = np.zeros(ROW_LANES, np.float32)
        for lane in range(rows):
            m[lane] = s[lane] * inv_c
        for c in range(C):
            for lane in range(rows):
                d = tile[c, lane] - m[lane]
                v[lane] = fma(d, d, v[lane])
        for lane in range(rows):
            i = i0 + lane
            r = ONE / math.sqrt(v[lane] * inv_c + EPS)
            mi = m[lane]
            for c in range(C):
                n = (inp[i, c] - mi) * r
                out[i, c] = fma(n, weight[c], bias[c])
            mean[i] = mi
            rstd[i] = r


@kernel(parallel=True)
def layernorm_backward_input(dinp, dout, inp, weight, mean, rstd):
    """dinp += the input gradient, row by row."""
    N, C = inp.shape
    inv_c = ONE / np.float32(C)
    for i in numba.prange(N):
        m = mean[i]
        r = rstd[i]
        dnorm_mean = ZERO
        dnorm_norm_mean = ZERO
        for c in range(C):
            n = (inp[i, c] - m) * r
            dn = weight[c] * dout[i, c]
            dnorm_mean += dn
            dnorm_norm_mean = fma(dn, n, dnorm_norm_mean)
        dnorm_mean = dnorm_mean * inv_c
        dnorm_norm_mean = dnorm_norm_mean * inv_c
        for c in range(C):
            n = (inp[i, c] - m) * r
            dn = weight[c] * dout[i, c]
            g = (dn - dnorm_mean) - n * dnorm_norm_mean
            dinp[i, c] += g * r


CHANNEL_LANES = 16  # channels whose row sums advance side by side, one per vector lane


@kernel(parallel=True)
def layernorm_backward_params(dweight, dbias, dout, inp, mean, rstd):
    """dweight += sum_rows dout*norm, dbias += sum_rows dout, rows in ascending order.
    CHANNEL_LANES channels run side by side (each its own two chains, so the same
    bits), reading each row's run of them contiguously."""
    N, C = inp.shape
    for block in numba.prange((C + CHANNEL_LANES - 1) // CHANNEL_LANES):
        c0 = block * CHANNEL_LANES
        width = min(CHANNEL_LANES, C - c0)
        dw = np.empty(CHANNEL_LANES, np.float32)
        db = np.empty(CHANNEL_LANES, np.float32)
        for lane in range(width):
            dw[lane] = dweight[c0 + lane]
            db[lane] = dbias[c0 + lane]
        for i in range(N):
            m = mean[i]
            r = rstd[i]
            for lane in range(width):
                n = (inp[i, c0 + lane] - m) * r
                dw[lane] = fma(n, dout[i, c0 + lane], dw[lane])
                db[lane] += dout[i, c0 + lane]
        for lane in range(width):
            dweight[c0 + lane] = dw[lane]
            dbias[c0 + lane] = db[lane]


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd) -> None:
    """The full LayerNorm backward: input gradient, then parameter gradients."""
    layernorm_backward_input(dinp, dout, inp, weight, mean, rstd)
    layernorm_backward_params(dweight, dbias, dout, inp, mean, rstd)
