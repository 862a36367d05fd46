"""Softmax cross-entropy over the vocabulary, fused, forward and backward."""
import numba
import numpy as np

from kernels.mathfn import exp_f32, log_f32
from kernels.fp import kernel

ZERO = np.float32(0.0)
ONE = np.float32(1.0)
NEG_INF = np.float32(-np.inf)


@kernel(parallel=True)
def crossentropy_forward(losses, probs, logits, targets):
    """Per row: probs = softmax(logits), losses = -log probs[target].  logits (N,V)."""
    N, V = logits.shape
    for i in numba.prange(N):
        maxval = NEG_INF
        for v in range(V):
            if logits[i, v] > maxval:
                maxval = logits[i, v]
        expsum = ZERO
        for v in range(V):
            e = exp_f32(logits[i, v] - maxval)
            probs[i, v] = e
            expsum += e
        inv = ONE / expsum
        for v in range(V):
            probs[i, v] = probs[i, v] * inv
        # log-sum-exp form: exact where probs[target] would underflow
        losses[i] = log_f32(expsum) - (logits[i, targets[i]] - maxval)


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
