"""Optimizers: global-norm gradient clipping, AdamW, and the outer Nesterov step.

All operate on flat float32 buffers.  Reductions over the whole buffer use a
fixed chunk-then-sequential order, so the result does not depend on the thread
count.
"""
import math

import numba
import numpy as np

from kernels.fp import fma, kernel

ZERO = np.float32(0.0)
ONE = np.float32(1.0)
NORM_CHUNK = 8192
CHAINS = 8  # chunks whose chains advance side by side (sum_of_squares names each accumulator)


@kernel(inline="always")
def _chunk_chain(x, lo, hi):
    """The fma chain of x[lo:hi]'s squares, in order, from zero."""
    s = ZERO
    for i in range(lo, hi):
        s = fma(x[i], x[i], s)
    return s


@kernel(parallel=True)
def sum_of_squares(x) -> np.float32:
    """sum x_i^2: each 8192-element chunk summed in order, then the chunk sums in order.

    A chunk's sum is one fma chain, latency-bound if run alone; CHAINS whole chunks
    run side by side instead, in scalar accumulators the core's two FMA pipes keep
    busy (the same chains, so the same bits).  The chunks left over, the short last
    one among them, run alone.  Chains in vector lanes were slower: their strided
    loads and their accumulators in memory took 3x as long (874 against 284 us for
    834,304 elements on one thread)."""
    n_full = x.size // NORM_CHUNK
    n_chunks = (x.size + NORM_CHUNK - 1) // NORM_CHUNK
    partial = np.empty(n_chunks, np.float32)
    n_groups = n_full // CHAINS
    for group in numba.prange(n_groups):
        lo = group * CHAINS * NORM_CHUNK
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = ZERO
        for i in range(lo, lo + NORM_CHUNK):
            x0, x1, x2, x3 = x[i], x[i + NORM_CHUNK], x[i + 2 * NORM_CHUNK], x[i + 3 * NORM_CHUNK]
            x4, x5, x6, x7 = (x[i + 4 * NORM_CHUNK], x[i + 5 * NORM_CHUNK], x[i + 6 * NORM_CHUNK],
                              x[i + 7 * NORM_CHUNK])
            s0, s1, s2, s3 = fma(x0, x0, s0), fma(x1, x1, s1), fma(x2, x2, s2), fma(x3, x3, s3)
            s4, s5, s6, s7 = fma(x4, x4, s4), fma(x5, x5, s5), fma(x6, x6, s6), fma(x7, x7, s7)
        j = group * CHAINS
        partial[j], partial[j + 1], partial[j + 2], partial[j + 3] = s0, s1, s2, s3
        partial[j + 4], partial[j + 5], partial[j + 6], partial[j + 7] = s4, s5, s6, s7
    for j in numba.prange(n_groups * CHAINS, n_chunks):
        partial[j] = _chunk_chain(x, j * NORM_CHUNK, min((j + 1) * NORM_CHUNK, x.size))
    total = ZERO
    for j in range(n_chunks):
        total += partial[j]
    return total


@kernel(parallel=True)
def scale_in_place(x, factor):
    for i in numba.prange(x.size):
        x[i] = x[i] * factor


@kernel()
def clip_grad_norm(grads, max_norm) -> np.float32:
    """Scale grads so that their global L2 norm is at most max_norm; return the norm before."""
    norm = math.sqrt(sum_of_squares(grads))
    if norm > max_norm:
        scale_in_place(grads, max_norm / norm)
    return norm


@kernel()
def adam_bias_corrections(beta1, beta2, step):
    """(1 - beta1^step, 1 - beta2^step), the powers taken by repeated float32 products.
    Once both products stop changing (they round to zero or to a subnormal that
    beta no longer moves) the rest of the loop could not change them: it stops
    there, so a state carried for millions of steps does not pay for each one."""
    p1 = ONE
    p2 = ONE
    for _ in range(step):
        n1 = p1 * beta1
        n2 = p2 * beta2
        if n1 == p1 and n2 == p2:
            break
        p1 = n1
        p2 = n2
    return ONE - p1, ONE - p2


ADAM_CHUNK = 32768  # elements one task of the parallel update takes


@kernel(inline="always")
def _adamw_run(params, grads, m, v, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    """The update of every element of these views.  Indexed from zero over whole views,
    the loop vectorizes; over prange(lo, hi) it did not (3.5 ms against 0.45 for the
    devnet's 834,304 parameters on one thread)."""
    one_minus_b1 = ONE - beta1
    one_minus_b2 = ONE - beta2
    for i in range(params.size):
        g = grads[i]
        mi = fma(beta1, m[i], one_minus_b1 * g)
        vi = fma(beta2, v[i], one_minus_b2 * (g * g))
        m[i] = mi
        v[i] = vi
        m_hat = mi / correction1
        v_hat = vi / correction2
        update = m_hat / (math.sqrt(v_hat) + eps)
        params[i] = params[i] - lr * fma(weight_decay, params[i], update)


@kernel(parallel=True)
def adamw_segment(params, grads, m, v, lo, hi, lr, beta1, beta2, eps, weight_decay,
                  correction1, correction2):
    """The update of elements lo..hi, ADAM_CHUNK of them a task (each element alone,
    so the chunks change no bit)."""
    for chunk in numba.prange((hi - lo + ADAM_CHUNK - 1) // ADAM_CHUNK):
        a = lo + chunk * ADAM_CHUNK
        b = min(a + ADAM_CHUNK, hi)
        _adamw_run(params[a:b], grads[a:b], m[a:b], v[a:b], lr, beta1, beta2, eps,
                   weight_decay, correction1, correction2)


@kernel()
def adamw(params, grads, m, v, segments, decay, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update (step is 1-based).  segments (S,2) holds (offset, size) per
    tensor; decay[s] is 1 where that tensor is weight-decayed and 0 where not."""
    correction1, correction2 = adam_bias_corrections(beta1, beta2, step)
    for s in range(segments.shape[0]):
        lo = segments[s, 0]
        hi = lo + segments[s, 1]
        wd = weight_decay if decay[s] else ZERO
        adamw_segment(params, grads, m, v, lo, hi, lr, beta1, beta2, eps, wd,
                      correction1, correction2)


@kernel(parallel=True)
def mean_of_deltas(out, deltas):
    """out = mean over rows of deltas (U, P): rows summed in order, then divided by U."""
    U, P = deltas.shape
    count = np.float32(U)
    for i in numba.prange(P):
        s = ZERO
        for u in range(U):
            s += deltas[u, i]
        out[i] = s / count


@kernel(parallel=True)
def outer_nesterov(weights, momentum, mean_delta, lr, mu):
    """DiLoCo's outer step with Nesterov momentum, the outer gradient being -mean_delta:
    momentum = mu*momentum + g;  weights -= lr * (g + mu*momentum)."""
    for i in numba.prange(weights.size):
        g = -mean_delta[i]
        mom = fma(mu, momentum[i], g)
        momentum[i] = mom
        weights[i] = weights[i] - lr * fma(mu, mom, g)
