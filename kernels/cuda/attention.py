"""Causal multi-head self-attention on CUDA: the per-element arithmetic written in
kernels/attention.py's docstring, bit for bit.

Forward: one thread per (b, h, t) computes its row of att and its output row.
Backward, split so that every gradient element is one thread's chain in the CPU order:
  1. one thread per (b, h, t): datt and w for row t, then dpre[t, t2] into a scratch
     (B,NH,T,T) buffer;
  2. one thread per (b, t, h, i): dq[t, i] chained over t2 ascending;
  3. one thread per (b, t2, h, i): dk[t2, i] and dv[t2, i] chained over t >= t2 ascending.
"""
import numpy as np
from numba import cuda

from kernels.attention import NEG_INF, ONE, ZERO
from kernels.cuda.arrays import scratch
from kernels.cuda.fp import THREADS, blocks, fadd, fdiv, fma, fmul, fsqrt, fsub
from kernels.cuda.mathfn import exp_f32


@cuda.jit
def _attention_forward(out, att, qkv, n_head):
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    task = cuda.grid(1)
    if task < B * n_head * T:
        b = task // (n_head * T)
        h = task // T % n_head
        t = task % T
        q0 = h * hs
        k0 = C + h * hs
        v0 = 2 * C + h * hs
        scale = fdiv(ONE, fsqrt(np.float32(hs)))
        for t2 in range(t + 1, T):
            att[b, h, t, t2] = ZERO
        maxval = NEG_INF
        for t2 in range(t + 1):
            s = ZERO
            for i in range(hs):
                s = fma(qkv[b, t, q0 + i], qkv[b, t2, k0 + i], s)
            s = fmul(s, scale)
            att[b, h, t, t2] = s
            if s > maxval:
                maxval = s
        expsum = ZERO
        for t2 in range(t + 1):
            e = exp_f32(fsub(att[b, h, t, t2], maxval))
            att[b, h, t, t2] = e
            expsum = fadd(expsum, e)
        inv = fdiv(ONE, expsum)
        for t2 in range(t + 1):
            att[b, h, t, t2] = fmul(att[b, h, t, t2], inv)
        for i in range(hs):
            o = ZERO
            for t2 in range(t + 1):
                o = fma(att[b, h, t, t2], qkv[b, t2, v0 + i], o)
            out[b, t, q0 + i] = o


@cuda.jit
def _attention_dpre(dpre, dout, qkv, att, n_head):
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    task = cuda.grid(1)
    if task < B * n_head * T:
        b = task // (n_head * T)
        h = task // T % n_head
        t = task % T
        v0 = 2 * C + h * hs
        scale = fdiv(ONE, fsqrt(np.float32(hs)))
        # datt[t2] goes to dpre[t2] first, then is overwritten by dpre itself.
        weighted = ZERO
        for t2 in range(t + 1):
            d = ZERO
            for i in range(hs):
                d = fma(dout[b, t, h * hs + i], qkv[b, t2, v0 + i], d)
            dpre[b, h, t, t2] = d
            weighted = fma(att[b, h, t, t2], d, weighted)
        for t2 in range(t + 1):
            dpre[b, h, t, t2] = fmul(fmul(att[b, h, t, t2], fsub(dpre[b, h, t, t2], weighted)),
                                     scale)


@cuda.jit
def _attention_dq(dqkv, dpre, qkv, n_head):
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    j = cuda.grid(1)
    if j < B * T * C:
        b = j // (T * C)
        t = j // C % T
        h = j % C // hs
        i = j % hs
        k0 = C + h * hs
        acc = dqkv[b, t, h * hs + i]
        for t2 in range(t + 1):
            acc = fma(dpre[b, h, t, t2], qkv[b, t2, k0 + i], acc)
        dqkv[b, t, h * hs + i] = acc


@cuda.jit
def _attention_dkv(dqkv, dpre, dout, qkv, att, n_head):
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    j = cuda.grid(1)
    if j < B * T * C:
        b = j // (T * C)
        t2 = j // C % T
        h = j % C // hs
        i = j % hs
        k = C + h * hs + i
        v = 2 * C + h * hs + i
        dk = dqkv[b, t2, k]
        dv = dqkv[b, t2, v]
        for t in range(t2, T):
            dk = fma(dpre[b, h, t, t2], qkv[b, t, h * hs + i], dk)
            dv = fma(att[b, h, t, t2], dout[b, t, h * hs + i], dv)
        dqkv[b, t2, k] = dk
        dqkv[b, t2, v] = dv


def attention_forward(out, att, qkv, n_head: int) -> None:
    """out (B,T,C) = softmax(q k^T / sqrt(hs), causal) v per head; att (B,NH,T,T) keeps
    the probabilities (zero above the diagonal)."""
    B, T, _ = qkv.shape
    _attention_forward[blocks(B * n_head * T), THREADS](out, att, qkv, n_head)


def attention_backward(dqkv, dout, qkv, att, n_head: int) -> None:
    """dqkv += the gradient of attention_forward's output dout."""
    B, T, C3 = qkv.shape
    dpre = scratch("attention.dpre", att.shape)
    _attention_dpre[blocks(B * n_head * T), THREADS](dpre, dout, qkv, att, n_head)
    _attention_dq[blocks(B * T * (C3 // 3)), THREADS](dqkv, dpre, qkv, n_head)
    _attention_dkv[blocks(B * T * (C3 // 3)), THREADS](dqkv, dpre, dout, qkv, att, n_head)
