"""Softmax cross-entropy on CUDA: kernels/crossentropy.py's arithmetic, bit for bit.

One thread per row for the forward (max, sum of exps and log are sequential over the
vocabulary); one thread per logit for the backward.
"""
import numpy as np
from numba import cuda

from kernels.crossentropy import NEG_INF, ONE, ZERO
from kernels.cuda.arrays import scratch
from kernels.cuda.fp import THREADS, blocks, fadd, fdiv, fmul, fsub
from kernels.cuda.mathfn import exp_f32, log_f32


@cuda.jit
def _crossentropy_forward(losses, probs, logits, targets):
    N, V = logits.shape
    i = cuda.grid(1)
    if i < N:
        maxval = NEG_INF
        for v in range(V):
            if logits[i, v] > maxval:
                maxval = logits[i, v]
        expsum = ZERO
        for v in range(V):
            e = exp_f32(fsub(logits[i, v], maxval))
            probs[i, v] = e
            expsum = fadd(expsum, e)
        inv = fdiv(ONE, expsum)
        for v in range(V):
            probs[i, v] = fmul(probs[i, v], inv)
        losses[i] = fsub(log_f32(expsum), fsub(logits[i, targets[i]], maxval))


@cuda.jit
def _mean_loss(out, losses):
    # A single thread: the CPU sums the rows in order.
    if cuda.grid(1) == 0:
        s = ZERO
        for i in range(losses.size):
            s = fadd(s, losses[i])
        out[0] = fdiv(s, np.float32(losses.size))


@cuda.jit
def _crossentropy_backward(dlogits, probs, targets):
    N, V = probs.shape
    j = cuda.grid(1)
    if j < N * V:
        i = j // V
        v = j % V
        dloss = fdiv(ONE, np.float32(N))
        indicator = ONE if v == targets[i] else ZERO
        dlogits[i, v] = fmul(fsub(probs[i, v], indicator), dloss)


def crossentropy_forward(losses, probs, logits, targets) -> None:
    """Per row: probs = softmax(logits), losses = -log probs[target].  logits (N,V)."""
    _crossentropy_forward[blocks(logits.shape[0]), THREADS](losses, probs, logits, targets)


def mean_loss(losses) -> np.float32:
    """The mean of the per-row losses, summed in row order (copied to the host)."""
    out = scratch("mean_loss", (1,))
    _mean_loss[1, 1](out, losses)
    return out.copy_to_host()[0]


def crossentropy_backward(dlogits, probs, targets) -> None:
    """dlogits = (probs - onehot(target)) / N: the gradient of the mean loss."""
    _crossentropy_backward[blocks(probs.size), THREADS](dlogits, probs, targets)
