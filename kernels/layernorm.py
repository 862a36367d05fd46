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


ROWS_SIDE_BY_SIDE = 4  # rows whose channel chains advance together (each kernel names them)


@kernel(inline="always")
def _forward_row(out, mean, rstd, inp, weight, bias, i, m, r):
    """Row i's output, given its mean and reciprocal standard deviation."""
    C = inp.shape[1]
    for c in range(C):
        n = (inp[i, c] - m) * r
        out[i, c] = fma(n, weight[c], bias[c])
    mean[i] = m
    rstd[i] = r


@kernel(parallel=True)
def layernorm_forward(out, mean, rstd, inp, weight, bias):
    """out = (inp - mean) * rstd * weight + bias per row.  inp, out (N,C); mean, rstd (N,).

    Each row's mean and variance are sequential chains over its channels, latency-bound
    if run alone: four rows' chains run side by side in scalar accumulators instead
    (the same chains, so the same bits; 40 against 69 us at 512 x 128 on one thread,
    where 16 rows in vector lanes, transposed into a tile first, took the 69).  A group
    past the last row repeats that row in the spare places and writes nothing there."""
    N, C = inp.shape
    inv_c = ONE / np.float32(C)
    for group in numba.prange((N + ROWS_SIDE_BY_SIDE - 1) // ROWS_SIDE_BY_SIDE):
        i0 = group * ROWS_SIDE_BY_SIDE
        i1, i2, i3 = min(i0 + 1, N - 1), min(i0 + 2, N - 1), min(i0 + 3, N - 1)
        s0 = s1 = s2 = s3 = ZERO
        for c in range(C):
            s0, s1, s2, s3 = s0 + inp[i0, c], s1 + inp[i1, c], s2 + inp[i2, c], s3 + inp[i3, c]
        m0, m1, m2, m3 = s0 * inv_c, s1 * inv_c, s2 * inv_c, s3 * inv_c
        v0 = v1 = v2 = v3 = ZERO
        for c in range(C):
            d0, d1, d2, d3 = inp[i0, c] - m0, inp[i1, c] - m1, inp[i2, c] - m2, inp[i3, c] - m3
            v0, v1, v2, v3 = fma(d0, d0, v0), fma(d1, d1, v1), fma(d2, d2, v2), fma(d3, d3, v3)
        _forward_row(out, mean, rstd, inp, weight, bias, i0, m0, ONE / math.sqrt(v0 * inv_c + EPS))
        if i0 + 1 < N:
            _forward_row(out, mean, rstd, inp, weight, bias, i1, m1, ONE / math.sqrt(v1 * inv_c + EPS))
        if i0 + 2 < N:
            _forward_row(out, mean, rstd, inp, weight, bias, i2, m2, ONE / math.sqrt(v2 * inv_c + EPS))
        if i0 + 3 < N:
            _forward_row(out, mean, rstd, inp, weight, bias, i3, m3, ONE / math.sqrt(v3 * inv_c + EPS))


@kernel(inline="always")
def _input_gradient_row(dinp, dout, inp, weight, i, m, r, dnorm_mean, dnorm_norm_mean):
    """dinp[i] += row i's input gradient, given its two channel means."""
    C = inp.shape[1]
    for c in range(C):
        n = (inp[i, c] - m) * r
        dn = weight[c] * dout[i, c]
        g = (dn - dnorm_mean) - n * dnorm_norm_mean
        dinp[i, c] += g * r


@kernel(parallel=True)
def layernorm_backward_input(dinp, dout, inp, weight, mean, rstd):
    """dinp += the input gradient, row by row.

    A row's two means are sequential chains over its channels: four rows' chains run
    side by side, as in the forward (42 against 77 us at 512 x 128 on one thread)."""
    N, C = inp.shape
    inv_c = ONE / np.float32(C)
    for group in numba.prange((N + ROWS_SIDE_BY_SIDE - 1) // ROWS_SIDE_BY_SIDE):
        i0 = group * ROWS_SIDE_BY_SIDE
        i1, i2, i3 = min(i0 + 1, N - 1), min(i0 + 2, N - 1), min(i0 + 3, N - 1)
        m0, m1, m2, m3 = mean[i0], mean[i1], mean[i2], mean[i3]
        r0, r1, r2, r3 = rstd[i0], rstd[i1], rstd[i2], rstd[i3]
        s0 = s1 = s2 = s3 = ZERO  # dnorm_mean's chains
        t0 = t1 = t2 = t3 = ZERO  # dnorm_norm_mean's chains
        for c in range(C):
            w = weight[c]
            dn0, dn1, dn2, dn3 = w * dout[i0, c], w * dout[i1, c], w * dout[i2, c], w * dout[i3, c]
            s0, s1, s2, s3 = s0 + dn0, s1 + dn1, s2 + dn2, s3 + dn3
            t0 = fma(dn0, (inp[i0, c] - m0) * r0, t0)
            t1 = fma(dn1, (inp[i1, c] - m1) * r1, t1)
            t2 = fma(dn2, (inp[i2, c] - m2) * r2, t2)
            t3 = fma(dn3, (inp[i3, c] - m3) * r3, t3)
        _input_gradient_row(dinp, dout, inp, weight, i0, m0, r0, s0 * inv_c, t0 * inv_c)
        if i0 + 1 < N:
            _input_gradient_row(dinp, dout, inp, weight, i1, m1, r1, s1 * inv_c, t1 * inv_c)
        if i0 + 2 < N:
            _input_gradient_row(dinp, dout, inp, weight, i2, m2, r2, s2 * inv_c, t2 * inv_c)
        if i0 + 3 < N:
            _input_gradient_row(dinp, dout, inp, weight, i3, m3, r3, s3 * inv_c, t3 * inv_c)


@kernel()
def layernorm_backward_params(dweight, dbias, dout, inp, mean, rstd):
    """dweight += sum_rows dout*norm, dbias += sum_rows dout, rows in ascending order.
    One thread streams the rows, each adding into every channel's two chains at once:
    a contiguous run that vectorizes.  In parallel blocks of 16 channels it took 8x as
    long (88 against 11 us at 512 x 128, one thread; 45 against 10 at two), as the bias
    gradient did."""
    N, C = inp.shape
    for i in range(N):
        m = mean[i]
        r = rstd[i]
        for c in range(C):
            n = (inp[i, c] - m) * r
            dweight[c] = fma(n, dout[i, c], dweight[c])
            dbias[c] += dout[i, c]


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd) -> None:
    """The full LayerNorm backward: input gradient, then parameter gradients."""
    layernorm_backward_input(dinp, dout, inp, weight, mean, rstd)
    layernorm_backward_params(dweight, dbias, dout, inp, mean, rstd)
