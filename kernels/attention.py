"""Causal multi-head self-attention, forward and backward.

qkv (B,T,3C) holds queries, keys and values side by side; head h uses channels
h*hs .. (h+1)*hs of each.  att (B,NH,T,T) keeps the softmax probabilities for the
backward pass.  Both passes are parallel over (b, h); each task copies its head's
q, k, v into contiguous buffers (and transposes k or v) so the inner loops run
along contiguous memory and vectorize across outputs.

Per-element arithmetic (what the CUDA port must reproduce):
  score(t,t2) = fma chain over i ascending of q[t,i]*k[t2,i] from 0, times scale;
  att = exp(score - rowmax) * (1 / sum of those exps in t2 order);
  out[t,i]    = fma chain over t2 ascending of att[t,t2]*v[t2,i] from 0.
Backward, walking t ascending:
  datt[t2]  = fma chain over i of dout[t,i]*v[t2,i] from 0;
  dv[t2,i] += att[t,t2]*dout[t,i]   (fma, chained over t);
  w         = fma chain over t2 of att[t,t2]*datt[t2] from 0;
  dpre      = att[t,t2] * (datt[t2] - w) * scale;
  dq[t,i]  += dpre*k[t2,i] (fma, chained over t2);  dk[t2,i] += dpre*q[t,i] (fma, chained over t).
"""
import math

import numba
import numpy as np

from kernels.fp import fma, kernel
from kernels.mathfn import exp_f32

ZERO = np.float32(0.0)
ONE = np.float32(1.0)
NEG_INF = np.float32(-np.inf)


@kernel(inline="always")
def _head_copies(x, b, h, hs):
    """Contiguous (T,hs) copies of head h's query, key and value parts of x[b] (T,3C)."""
    T = x.shape[1]
    C = x.shape[2] // 3
    q = np.empty((T, hs), np.float32)
    k = np.empty((T, hs), np.float32)
    v = np.empty((T, hs), np.float32)
    for t in range(T):
        for i in range(hs):
            q[t, i] = x[b, t, h * hs + i]
            k[t, i] = x[b, t, C + h * hs + i]
            v[t, i] = x[b, t, 2 * C + h * hs + i]
    return q, k, v


@kernel(parallel=True)
def attention_forward(out, att, qkv, n_head):
    """out (B,T,C) = softmax(q k^T / sqrt(hs), causal) v per head."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    scale = ONE / math.sqrt(np.float32(hs))
    for task in numba.prange(B * n_head):
        b = task // n_head
        h = task % n_head
        q, k, v = _head_copies(qkv, b, h, hs)
        kt = np.ascontiguousarray(k.T)
        o = np.empty(hs, np.float32)
        for t in range(T):
            row = att[b, h, t]
            for t2 in range(T):
                row[t2] = ZERO
            for i in range(hs):
                qi = q[t, i]
                for t2 in range(t + 1):
                    row[t2] = fma(qi, kt[i, t2], row[t2])
            # Element-wise loops apart from the in-order reductions, so they vectorize.
            for t2 in range(t + 1):
                row[t2] = row[t2] * scale
            maxval = NEG_INF
            for t2 in range(t + 1):
                if row[t2] > maxval:
                    maxval = row[t2]
            for t2 in range(t + 1):
                row[t2] = exp_f32(row[t2] - maxval)
            expsum = ZERO
            for t2 in range(t + 1):
                expsum += row[t2]
            inv = ONE / expsum
            for t2 in range(t + 1):
                row[t2] = row[t2] * inv
            for i in range(hs):
                o[i] = ZERO
            for t2 in range(t + 1):
                a = row[t2]
                for i in range(hs):
                    o[i] = fma(a, v[t2, i], o[i])
            for i in range(hs):
                out[b, t, h * hs + i] = o[i]


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
        q, k, v = _head_copies(qkv, b, h, hs)
        vt = np.ascontiguousarray(v.T)
        dq, dk, dv = _head_copies(dqkv, b, h, hs)
        datt = np.empty(T, np.float32)
        do = np.empty(hs, np.float32)
        for t in range(T):
            row = att[b, h, t]
            for i in range(hs):
                do[i] = dout[b, t, h * hs + i]
            for t2 in range(t + 1):
                datt[t2] = ZERO
            for i in range(hs):
                d = do[i]
                for t2 in range(t + 1):
                    datt[t2] = fma(d, vt[i, t2], datt[t2])
            for t2 in range(t + 1):
                a = row[t2]
                for i in range(hs):
                    dv[t2, i] = fma(a, do[i], dv[t2, i])
            weighted = ZERO
            for t2 in range(t + 1):
                weighted = fma(row[t2], datt[t2], weighted)
            for t2 in range(t + 1):
                dpre = row[t2] * (datt[t2] - weighted) * scale
                for i in range(hs):
                    dq[t, i] = fma(dpre, k[t2, i], dq[t, i])
                    dk[t2, i] = fma(dpre, q[t, i], dk[t2, i])
        for t in range(T):
            for i in range(hs):
                dqkv[b, t, h * hs + i] = dq[t, i]
                dqkv[b, t, C + h * hs + i] = dk[t, i]
                dqkv[b, t, 2 * C + h * hs + i] = dv[t, i]
