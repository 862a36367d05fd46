"""Causal multi-head self-attention, forward and backward.

qkv (B,T,3C) holds queries, keys and values side by side; head h uses channels
h*hs .. (h+1)*hs of each.  att (B,NH,T,T) keeps the softmax probabilities for the
backward pass.  Both passes are parallel over (b, h).  Within a task every product
of two (T,.) matrices runs on matmul's register tiles (tile_row_acc), which keep
each element's chain as one lane's fma sequence; where a chain starts or stops at
the diagonal, the triangle next to it runs row by row, so no chain ever takes a
term past the causal mask (not even a zero one: 0*inf would be NaN).

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
from kernels.matmul import MR, NR, pack_panels, tile_row_acc

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


@kernel(inline="always")
def _panels(n):
    """NR-column panels that hold n columns."""
    return (n + NR - 1) // NR


@kernel()
def _scores(x, y, s, ap, c_pad):
    """s[t, t2] = the fma chain over i ascending of x[t,i]*y[t2,i] from 0, for t2 <= t.

    Above the diagonal s holds zeros or whatever a diagonal tile computed there;
    callers read only t2 <= t.  ap (max(T, hs) x MR) and c_pad (MR x NR) are scratch.
    """
    T, hs = x.shape
    bp = np.empty((_panels(T), hs, NR), np.float32)
    pack_panels(y.T, bp)
    for t in range(T):
        for t2 in range(T):
            s[t, t2] = ZERO
    for m0 in range(0, T, MR):
        last = min(m0 + MR, T) - 1
        tile_row_acc(x, hs, 1, bp, s, m0, 0, hs, last // NR + 1, ap, c_pad)


@kernel()
def _rows_to_diagonal(p, y, c, ap, c_pad):
    """c[t, :] continues its fma chain over t2 = 0 .. t ascending with p[t,t2]*y[t2,:]
    (p a C-contiguous (T,T): the tiles address it flat)."""
    T, hs = y.shape
    bp = np.empty((_panels(hs), T, NR), np.float32)
    pack_panels(y, bp)
    for m0 in range(0, T, MR):
        if m0 > 0:  # every row of the tile takes t2 < m0
            tile_row_acc(p, T, 1, bp, c, m0, 0, m0, bp.shape[0], ap, c_pad)
        for t in range(m0, min(m0 + MR, T)):
            for t2 in range(m0, t + 1):
                a = p[t, t2]
                for i in range(hs):
                    c[t, i] = fma(a, y[t2, i], c[t, i])


@kernel()
def _columns_from_diagonal(p, y, c, ap, c_pad):
    """c[t2, :] continues its fma chain over t = t2 .. T-1 ascending with p[t,t2]*y[t,:]
    (p a C-contiguous (T,T), read through its transpose)."""
    T, hs = y.shape
    bp = np.empty((_panels(hs), T, NR), np.float32)
    pack_panels(y, bp)
    for m0 in range(0, T, MR):
        end = min(m0 + MR, T)
        for t2 in range(m0, end):
            for t in range(t2, end):
                a = p[t, t2]
                for i in range(hs):
                    c[t2, i] = fma(a, y[t, i], c[t2, i])
        if end < T:  # every row of the tile takes t >= end
            tile_row_acc(p.T, 1, T, bp, c, m0, end, T, bp.shape[0], ap, c_pad)


@kernel(inline="always")
def _exp_row(row, n, maxval):
    """row[:n] = exp(row[:n] - maxval), element-wise, so the loop vectorizes."""
    for t2 in range(n):
        row[t2] = exp_f32(row[t2] - maxval)


@kernel(inline="always")
def _normalize_row(row, n, expsum):
    """row[:n] divided by its exponentials' sum (times its inverse), the rest zeros."""
    inv = ONE / expsum
    for t2 in range(n):
        row[t2] = row[t2] * inv
    for t2 in range(n, row.size):
        row[t2] = ZERO


@kernel(inline="always")
def _scale_and_max_from(row, lo, hi, scale, maxval):
    """row[lo:hi] scaled in place, and the max chain continued over it in order."""
    for t2 in range(lo, hi):
        a = row[t2] * scale
        row[t2] = a
        maxval = a if a > maxval else maxval
    return maxval


@kernel(inline="always")
def _sum_from(row, lo, hi, total):
    """The sum chain continued over row[lo:hi] in order."""
    for t2 in range(lo, hi):
        total += row[t2]
    return total


@kernel(inline="always")
def _softmax_row(s, t, scale):
    """Row t of the scores s, columns 0..t, scaled, becomes its softmax; the rest zeros.
    The exponentials and the normalization are element-wise loops, which vectorize;
    the scaling rides on the max's in-order loop."""
    row = s[t]
    maxval = _scale_and_max_from(row, 0, t + 1, scale, NEG_INF)
    _exp_row(row, t + 1, maxval)
    _normalize_row(row, t + 1, _sum_from(row, 0, t + 1, ZERO))


@kernel(inline="always")
def _softmax_four_rows(s, t0, scale):
    """_softmax_row for rows t0..t0+3, whose max and sum chains, latency-bound one row
    at a time, advance side by side over the columns all four rows have (0..t0),
    then each finishes its own (the same chains, so the same bits)."""
    r0, r1, r2, r3 = s[t0], s[t0 + 1], s[t0 + 2], s[t0 + 3]
    m0 = m1 = m2 = m3 = NEG_INF
    for t2 in range(t0 + 1):
        a0, a1, a2, a3 = r0[t2] * scale, r1[t2] * scale, r2[t2] * scale, r3[t2] * scale
        r0[t2], r1[t2], r2[t2], r3[t2] = a0, a1, a2, a3
        m0 = a0 if a0 > m0 else m0
        m1 = a1 if a1 > m1 else m1
        m2 = a2 if a2 > m2 else m2
        m3 = a3 if a3 > m3 else m3
    m1 = _scale_and_max_from(r1, t0 + 1, t0 + 2, scale, m1)
    m2 = _scale_and_max_from(r2, t0 + 1, t0 + 3, scale, m2)
    m3 = _scale_and_max_from(r3, t0 + 1, t0 + 4, scale, m3)
    _exp_row(r0, t0 + 1, m0)
    _exp_row(r1, t0 + 2, m1)
    _exp_row(r2, t0 + 3, m2)
    _exp_row(r3, t0 + 4, m3)
    e0 = e1 = e2 = e3 = ZERO
    for t2 in range(t0 + 1):
        e0, e1, e2, e3 = e0 + r0[t2], e1 + r1[t2], e2 + r2[t2], e3 + r3[t2]
    _normalize_row(r0, t0 + 1, e0)
    _normalize_row(r1, t0 + 2, _sum_from(r1, t0 + 1, t0 + 2, e1))
    _normalize_row(r2, t0 + 3, _sum_from(r2, t0 + 1, t0 + 3, e2))
    _normalize_row(r3, t0 + 4, _sum_from(r3, t0 + 1, t0 + 4, e3))


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
        ap = np.empty((max(T, hs), MR), np.float32)  # A rows of any product here
        c_pad = np.empty((MR, NR), np.float32)
        s = att[b, h]
        _scores(q, k, s, ap, c_pad)
        t0 = 0
        while t0 + 4 <= T:
            _softmax_four_rows(s, t0, scale)
            t0 += 4
        for t in range(t0, T):
            _softmax_row(s, t, scale)
        o = np.zeros((T, hs), np.float32)
        _rows_to_diagonal(s, v, o, ap, c_pad)
        for t in range(T):
            for i in range(hs):
                out[b, t, h * hs + i] = o[t, i]


@kernel(inline="always")
def _weighted_from(p, d, lo, hi, w):
    """The fma chain of p*d continued over columns lo..hi-1 in order."""
    for t2 in range(lo, hi):
        w = fma(p[t2], d[t2], w)
    return w


@kernel(inline="always")
def _softmax_backward_row(p, d, n, weighted, scale):
    """d (a row of datt) becomes the scores' gradient over its first n columns."""
    for t2 in range(n):
        d[t2] = p[t2] * (d[t2] - weighted) * scale


@kernel(inline="always")
def _softmax_backward_four_rows(a, dpre, t0, scale):
    """_softmax_backward_row for rows t0..t0+3, their weighted chains side by side over
    the columns all four have, as in _softmax_four_rows."""
    w0 = w1 = w2 = w3 = ZERO
    for t2 in range(t0 + 1):
        w0 = fma(a[t0, t2], dpre[t0, t2], w0)
        w1 = fma(a[t0 + 1, t2], dpre[t0 + 1, t2], w1)
        w2 = fma(a[t0 + 2, t2], dpre[t0 + 2, t2], w2)
        w3 = fma(a[t0 + 3, t2], dpre[t0 + 3, t2], w3)
    w1 = _weighted_from(a[t0 + 1], dpre[t0 + 1], t0 + 1, t0 + 2, w1)
    w2 = _weighted_from(a[t0 + 2], dpre[t0 + 2], t0 + 1, t0 + 3, w2)
    w3 = _weighted_from(a[t0 + 3], dpre[t0 + 3], t0 + 1, t0 + 4, w3)
    _softmax_backward_row(a[t0], dpre[t0], t0 + 1, w0, scale)
    _softmax_backward_row(a[t0 + 1], dpre[t0 + 1], t0 + 2, w1, scale)
    _softmax_backward_row(a[t0 + 2], dpre[t0 + 2], t0 + 3, w2, scale)
    _softmax_backward_row(a[t0 + 3], dpre[t0 + 3], t0 + 4, w3, scale)


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
        dq, dk, dv = _head_copies(dqkv, b, h, hs)
        do = np.empty((T, hs), np.float32)
        for t in range(T):
            for i in range(hs):
                do[t, i] = dout[b, t, h * hs + i]
        ap = np.empty((max(T, hs), MR), np.float32)  # A rows of any product here
        c_pad = np.empty((MR, NR), np.float32)
        a = att[b, h]
        dpre = np.empty((T, T), np.float32)
        _scores(do, v, dpre, ap, c_pad)  # datt, replaced row by row with dpre
        t0 = 0
        while t0 + 4 <= T:
            _softmax_backward_four_rows(a, dpre, t0, scale)
            t0 += 4
        for t in range(t0, T):
            _softmax_backward_row(a[t], dpre[t], t + 1, _weighted_from(a[t], dpre[t], 0, t + 1, ZERO),
                                  scale)
        _columns_from_diagonal(a, do, dv, ap, c_pad)
        _rows_to_diagonal(dpre, k, dq, ap, c_pad)
        _columns_from_diagonal(dpre, q, dk, ap, c_pad)
        for t in range(T):
            for i in range(hs):
                dqkv[b, t, h * hs + i] = dq[t, i]
                dqkv[b, t, C + h * hs + i] = dk[t, i]
                dqkv[b, t, 2 * C + h * hs + i] = dv[t, i]
