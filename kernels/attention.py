"""Causal multi-head self-attention, forward and backward.

qkv (B,T,3C) holds queries, keys and values side by side; head h uses channels
h*hs .. (h+1)*hs of each.  att (B,NH,T,T) keeps the softmax probabilities for the
backward pass.  Forward is parallel over (b, t, h) rows; backward over (b, h),
walking t in ascending order so that every key and value gradient is one
thread's sequential sum.
"""
import math

import numba
import numpy as np

from kernels.fp import fma, kernel
from kernels.mathfn import exp_f32

ZERO = np.float32(0.0)
ONE = np.float32(1.0)
NEG_INF = np.float32(-np.inf)


@kernel(parallel=True)
def attention_forward(out, att, qkv, n_head):
    """out (B,T,C) = softmax(q k^T / sqrt(hs), causal) v per head."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    scale = ONE / math.sqrt(np.float32(hs))
    for task in numba.prange(B * T * n_head):
        b = task // (T * n_head)
        t = (task // n_head) % T
        h = task % n_head
        q0 = h * hs
        k0 = C + h * hs
        v0 = 2 * C + h * hs
        row = att[b, h, t]
        maxval = NEG_INF
        for t2 in range(t + 1):
            dot = ZERO
            for i in range(hs):
                dot = fma(qkv[b, t, q0 + i], qkv[b, t2, k0 + i], dot)
            dot = dot * scale
            row[t2] = dot
            if dot > maxval:
                maxval = dot
        expsum = ZERO
        for t2 in range(t + 1):
            e = exp_f32(row[t2] - maxval)
            row[t2] = e
            expsum += e
        inv = ONE / expsum
        for t2 in range(t + 1):
            row[t2] = row[t2] * inv
        for t2 in range(t + 1, T):
            row[t2] = ZERO
        for i in range(hs):
            out[b, t, q0 + i] = ZERO
        for t2 in range(t + 1):
            a = row[t2]
            for i in range(hs):
                out[b, t, q0 + i] = fma(a, qkv[b, t2, v0 + i], out[b, t, q0 + i])


@kernel(parallel=True)
def attention_backward(dqkv, dout, qkv, att, n_head):
    """dqkv += the gradient of attention_forward's output dout."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    scale = ONE / math.sqrt(np.float32(hs))
    for task in numba.prange(B * n_head):
        b = task // n_head
        h = task % n_head
        q0 = h * hs
        k0 = C + h * hs
        v0 = 2 * C + h * hs
        datt = np.empty(T, np.float32)
        for t in range(T):
            row = att[b, h, t]
            for t2 in range(t + 1):
                d = ZERO
                for i in range(hs):
                    d = fma(dout[b, t, q0 + i], qkv[b, t2, v0 + i], d)
                datt[t2] = d
                a = row[t2]
                for i in range(hs):
                    dqkv[b, t2, v0 + i] = fma(a, dout[b, t, q0 + i], dqkv[b, t2, v0 + i])
            # softmax backward: dpre = att * (datt - sum_j att_j datt_j)
            weighted = ZERO
            for t2 in range(t + 1):
                weighted = fma(row[t2], datt[t2], weighted)
            for t2 in range(t + 1):
                dpre = row[t2] * (datt[t2] - weighted) * scale
                for i in range(hs):
                    dqkv[b, t, q0 + i] = fma(dpre, qkv[b, t2, k0 + i], dqkv[b, t, q0 + i])
                    dqkv[b, t2, k0 + i] = fma(dpre, qkv[b, t, q0 + i], dqkv[b, t2, k0 + i])
