"""LayerNorm on CUDA: kernels/layernorm.py's arithmetic, bit for bit.

Forward and the input gradient take one thread per row (the row's sums are sequential
over channels); the weight and bias gradients one thread per channel (sums over rows).
"""
import numpy as np
from numba import cuda

from kernels.cuda.fp import THREADS, blocks, fadd, fdiv, fma, fmul, fsqrt, fsub
from kernels.layernorm import EPS

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


@cuda.jit
def _layernorm_forward(out, mean, rstd, inp, weight, bias):
    N, C = inp.shape
    i = cuda.grid(1)
    if i < N:
        inv_c = fdiv(_ONE, np.float32(C))
        s = _ZERO
        for c in range(C):
            s = fadd(s, inp[i, c])
        m = fmul(s, inv_c)
        v = _ZERO
        for c in range(C):
            d = fsub(inp[i, c], m)
            v = fma(d, d, v)
        v = fmul(v, inv_c)
        r = fdiv(_ONE, fsqrt(fadd(v, EPS)))
        for c in range(C):
            n = fmul(fsub(inp[i, c], m), r)
            out[i, c] = fma(n, weight[c], bias[c])
        mean[i] = m
        rstd[i] = r


@cuda.jit
def _layernorm_backward_input(dinp, dout, inp, weight, mean, rstd):
    N, C = inp.shape
    i = cuda.grid(1)
    if i < N:
        inv_c = fdiv(_ONE, np.float32(C))
        m = mean[i]
        r = rstd[i]
        dnorm_mean = _ZERO
        dnorm_norm_mean = _ZERO
        for c in range(C):
            n = fmul(fsub(inp[i, c], m), r)
            dn = fmul(weight[c], dout[i, c])
            dnorm_mean = fadd(dnorm_mean, dn)
            dnorm_norm_mean = fma(dn, n, dnorm_norm_mean)
        dnorm_mean = fmul(dnorm_mean, inv_c)
        dnorm_norm_mean = fmul(dnorm_norm_mean, inv_c)
        for c in range(C):
            n = fmul(fsub(inp[i, c], m), r)
            dn = fmul(weight[c], dout[i, c])
            g = fsub(fsub(dn, dnorm_mean), fmul(n, dnorm_norm_mean))
            dinp[i, c] = fadd(dinp[i, c], fmul(g, r))


@cuda.jit
def _layernorm_backward_params(dweight, dbias, dout, inp, mean, rstd):
    N, C = inp.shape
    c = cuda.grid(1)
    if c < C:
        dw = dweight[c]
        db = dbias[c]
        for i in range(N):
            n = fmul(fsub(inp[i, c], mean[i]), rstd[i])
            dw = fma(n, dout[i, c], dw)
            db = fadd(db, dout[i, c])
        dweight[c] = dw
        dbias[c] = db


def layernorm_forward(out, mean, rstd, inp, weight, bias) -> None:
    """out = (inp - mean) * rstd * weight + bias per row.  inp, out (N,C); mean, rstd (N,)."""
    _layernorm_forward[blocks(inp.shape[0]), THREADS](out, mean, rstd, inp, weight, bias)


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd) -> None:
    """dinp, dweight, dbias += the LayerNorm gradients of dout."""
    N, C = inp.shape
    _layernorm_backward_input[blocks(N), THREADS](dinp, dout, inp, weight, mean, rstd)
    _layernorm_backward_params[blocks(C), THREADS](dweight, dbias, dout, inp, mean, rstd)
