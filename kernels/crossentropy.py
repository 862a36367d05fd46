"""Softmax cross-entropy over the vocabulary, fused, forward and backward."""
import numba
import numpy as np

from kernels.mathfn import exp_f32, log_f32
from kernels.fp import kernel

ZERO = np.float32(0.0)
ONE = np.float32(1.0)
NEG_INF = np.float32(-np.inf)


@kernel(inline="always")
def _exp_row(probs, logits, i, maxval):
    """probs[i] = exp(logits[i] - maxval), element-wise, so the loop vectorizes."""
    for v in range(logits.shape[1]):
        probs[i, v] = exp_f32(logits[i, v] - maxval)


@kernel(inline="always")
def _finish_row(losses, probs, logits, targets, i, maxval, expsum):
    """probs[i] normalized by its exponentials' sum, and row i's loss."""
    inv = ONE / expsum
    for v in range(logits.shape[1]):
        probs[i, v] = probs[i, v] * inv
    # log-sum-exp form: exact where probs[target] would underflow
    losses[i] = log_f32(expsum) - (logits[i, targets[i]] - maxval)


ROWS_SIDE_BY_SIDE = 4  # rows whose max and sum chains advance together (named below)


@kernel(parallel=True)
def crossentropy_forward(losses, probs, logits, targets):
    """Per row: probs = softmax(logits), losses = -log probs[target].  logits (N,V).

    A row's max and its exponentials' sum are in-order chains over the vocabulary,
    latency-bound one row at a time: four rows' chains advance side by side (the same
    chains, so the same bits), and the exponentials run in a loop of their own, which
    vectorizes.  A group past the last row repeats that row in its spare places: their
    exponentials are the row's own, rewritten, and only the row's place finishes it."""
    N, V = logits.shape
    for group in numba.prange((N + ROWS_SIDE_BY_SIDE - 1) // ROWS_SIDE_BY_SIDE):
        i0 = group * ROWS_SIDE_BY_SIDE
        i1, i2, i3 = min(i0 + 1, N - 1), min(i0 + 2, N - 1), min(i0 + 3, N - 1)
        m0 = m1 = m2 = m3 = NEG_INF
        for v in range(V):
            a0, a1, a2, a3 = logits[i0, v], logits[i1, v], logits[i2, v], logits[i3, v]
            m0 = a0 if a0 > m0 else m0
            m1 = a1 if a1 > m1 else m1
            m2 = a2 if a2 > m2 else m2
            m3 = a3 if a3 > m3 else m3
        _exp_row(probs, logits, i0, m0)
        _exp_row(probs, logits, i1, m1)
        _exp_row(probs, logits, i2, m2)
        _exp_row(probs, logits, i3, m3)
        e0 = e1 = e2 = e3 = ZERO
        for v in range(V):
            e0, e1, e2, e3 = e0 + probs[i0, v], e1 + probs[i1, v], e2 + probs[i2, v], e3 + probs[i3, v]
        _finish_row(losses, probs, logits, targets, i0, m0, e0)
        if i0 + 1 < N:
            _finish_row(losses, probs, logits, targets, i1, m1, e1)
        if i0 + 2 < N:
            _finish_row(losses, probs, logits, targets, i2, m2, e2)
        if i0 + 3 < N:
            _finish_row(losses, probs, logits, targets, i3, m3, e3)


@kernel()
def mean_loss(losses) -> np.float32:
    """The mean of the per-row losses, summed in row order."""
    s = ZERO
    for i in range(losses.size):
        s += losses[i]
    return s / np.float32(losses.size)


@kernel(parallel=True)
def crossentropy_backward(dlogits, probs, targets):
    """dlogits = (probs - onehot(target)) / N: the gradient of the mean loss."""
    N, V = probs.shape
    dloss = ONE / np.float32(N)
    for i in numba.prange(N):
        t = targets[i]
        for v in range(V):
            indicator = ONE if v == t else ZERO
            dlogits[i, v] = (probs[i, v] - indicator) * dloss
