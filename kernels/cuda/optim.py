"""Gradient clipping, AdamW and the outer Nesterov step on CUDA: kernels/optim.py's
arithmetic, bit for bit, one thread per element.  AdamW updates every tensor in one
launch: thread g of the concatenated segments finds its segment by binary search.

Whole-buffer sums keep the CPU's order: one thread per 8192-element chunk, then one
thread over the chunk sums.  The AdamW bias corrections are host scalars from the CPU
function itself (a short product of float32s, identical on any IEEE device).
"""
import functools

import numpy as np
from numba import cuda

from kernels.cuda.arrays import scratch
from kernels.cuda.fp import THREADS, blocks, fadd, fdiv, fma, fmul, fsqrt, fsub
from kernels.optim import NORM_CHUNK, ONE, ZERO, adam_bias_corrections


@cuda.jit
def _chunk_sums_of_squares(partial, x):
    j = cuda.grid(1)
    if j < partial.size:
        s = ZERO
        for i in range(j * NORM_CHUNK, min((j + 1) * NORM_CHUNK, x.size)):
            s = fma(x[i], x[i], s)
        partial[j] = s


@cuda.jit
def _sum_in_order(out, partial):
    if cuda.grid(1) == 0:
        total = ZERO
        for j in range(partial.size):
            total = fadd(total, partial[j])
        out[0] = total


@cuda.jit
def _clip_factor(norm_scale, total, max_norm):
    # norm_scale = (norm, max_norm / norm), left on the device for the scaling kernel
    if cuda.grid(1) == 0:
        norm = fsqrt(total[0])
        norm_scale[0] = norm
        norm_scale[1] = fdiv(max_norm, norm)


@cuda.jit
def _scale_if_clipped(x, norm_scale, max_norm):
    i = cuda.grid(1)
    if i < x.size and norm_scale[0] > max_norm:
        x[i] = fmul(x[i], norm_scale[1])


@cuda.jit
def _adamw(params, grads, m, v, offsets, starts, decays, lr, beta1, beta2, eps,
           correction1, correction2):
    # starts[s] is where segment s begins in the concatenation (starts[S] its length);
    # offsets[s] where it lies in the buffers, decays[s] its weight decay.
    g_index = cuda.grid(1)
    S = offsets.size
    if g_index < starts[S]:
        lo, hi = 0, S - 1
        while lo < hi:  # the last segment whose start is at or before g_index
            mid = (lo + hi + 1) // 2
            if starts[mid] <= g_index:
                lo = mid
            else:
                hi = mid - 1
        i = offsets[lo] + (g_index - starts[lo])
        weight_decay = decays[lo]
        one_minus_b1 = fsub(ONE, beta1)
        one_minus_b2 = fsub(ONE, beta2)
        g = grads[i]
        mi = fma(beta1, m[i], fmul(one_minus_b1, g))
        vi = fma(beta2, v[i], fmul(one_minus_b2, fmul(g, g)))
        m[i] = mi
        v[i] = vi
        m_hat = fdiv(mi, correction1)
        v_hat = fdiv(vi, correction2)
        update = fdiv(m_hat, fadd(fsqrt(v_hat), eps))
        params[i] = fsub(params[i], fmul(lr, fma(weight_decay, params[i], update)))


@cuda.jit
def _mean_of_deltas(out, deltas):
    U, P = deltas.shape
    i = cuda.grid(1)
    if i < P:
        s = ZERO
        for u in range(U):
            s = fadd(s, deltas[u, i])
        out[i] = fdiv(s, np.float32(U))


@cuda.jit
def _outer_nesterov(weights, momentum, mean_delta, lr, mu):
    i = cuda.grid(1)
    if i < weights.size:
        g = -mean_delta[i]
        mom = fma(mu, momentum[i], g)
        momentum[i] = mom
        weights[i] = fsub(weights[i], fmul(lr, fma(mu, mom, g)))


def _sum_of_squares_device(x):
    n_chunks = (x.size + NORM_CHUNK - 1) // NORM_CHUNK
    partial = scratch("sum_of_squares.partial", (max(n_chunks, 1),))
    total = scratch("sum_of_squares.total", (1,))
    if n_chunks:
        _chunk_sums_of_squares[blocks(n_chunks), THREADS](partial, x)
    _sum_in_order[1, 1](total, partial[:n_chunks])
    return total


def sum_of_squares(x) -> np.float32:
    """sum x_i^2: each 8192-element chunk summed in order, then the chunk sums in order."""
    return _sum_of_squares_device(x).copy_to_host()[0]


def clip_grad_norm(grads, max_norm: np.float32) -> np.float32:
    """Scale grads so that their global L2 norm is at most max_norm; return the norm before."""
    max_norm = np.float32(max_norm)
    norm_scale = scratch("clip_grad_norm.norm_scale", (2,))
    _clip_factor[1, 1](norm_scale, _sum_of_squares_device(grads), max_norm)
    if grads.size:
        _scale_if_clipped[blocks(grads.size), THREADS](grads, norm_scale, max_norm)
    return norm_scale.copy_to_host()[0]


@functools.lru_cache(maxsize=8)
def _segment_table(segments: bytes, decay: bytes, weight_decay: np.float32):
    """The device arrays _adamw reads, made once per layout (segments as int64 bytes)."""
    table = np.frombuffer(segments, np.int64).reshape(-1, 2)
    flags = np.frombuffer(decay, np.bool_)
    keep = table[:, 1] > 0
    offsets, sizes = table[keep, 0], table[keep, 1]
    order = np.argsort(offsets, kind="stable")
    ends = offsets[order] + sizes[order]
    if np.any(offsets[order][1:] < ends[:-1]):
        raise ValueError("AdamW segments overlap")  # one launch would race on them
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    decays = np.where(flags[keep], weight_decay, ZERO).astype(np.float32)
    return (cuda.to_device(np.ascontiguousarray(offsets)), cuda.to_device(starts),
            cuda.to_device(decays), int(starts[-1]))


def adamw(params, grads, m, v, segments: np.ndarray, decay: np.ndarray, step: int,
          lr: np.float32, beta1: np.float32, beta2: np.float32, eps: np.float32,
          weight_decay: np.float32) -> None:
    """One AdamW update (step is 1-based).  segments (S,2) holds (offset, size) per tensor,
    no two overlapping, and decay[s] whether it is weight-decayed; both are host arrays."""
    lr, beta1, beta2, eps = (np.float32(a) for a in (lr, beta1, beta2, eps))
    correction1, correction2 = adam_bias_corrections(beta1, beta2, step)
    offsets, starts, decays, total = _segment_table(
        np.ascontiguousarray(segments, np.int64).tobytes(),
        np.ascontiguousarray(decay, np.bool_).tobytes(), np.float32(weight_decay))
    if total:
        _adamw[blocks(total), THREADS](params, grads, m, v, offsets, starts, decays, lr, beta1,
                                       beta2, eps, np.float32(correction1),
                                       np.float32(correction2))


def mean_of_deltas(out, deltas) -> None:
    """out = mean over rows of deltas (U, P): rows summed in order, then divided by U."""
    _mean_of_deltas[blocks(deltas.shape[1]), THREADS](out, deltas)


def outer_nesterov(weights, momentum, mean_delta, lr: np.float32, mu: np.float32) -> None:
    """momentum = mu*momentum + g;  weights -= lr * (g + mu*momentum), g = -mean_delta."""
    _outer_nesterov[blocks(weights.size), THREADS](weights, momentum, mean_delta,
                                                    np.float32(lr), np.float32(mu))
