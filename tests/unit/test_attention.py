"""Attention's tiled kernels, whose softmax runs four rows' chains side by side, give
the bits of its per-element contract (the module docstring), written here plainly: one
scalar fma chain per output, in the order the contract names, one row at a time, on
shapes where tiles stick out of the matrices and cross the diagonal and where rows are
left over from the groups of four, and with an infinity the causal mask must keep out
of earlier rows."""
import math

import numba
import numpy as np
import pytest

from kernels.attention import attention_backward, attention_forward
from kernels.fp import fma
from kernels.mathfn import exp_f32

F32 = np.float32


@numba.njit(error_model="numpy")
def _reference_forward(out, att, qkv, n_head):
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    scale = F32(1.0) / math.sqrt(F32(hs))
    for b in range(B):
        for h in range(n_head):
            for t in range(T):
                for t2 in range(T):
                    att[b, h, t, t2] = F32(0.0)
                maxval = F32(-np.inf)
                for t2 in range(t + 1):
                    acc = F32(0.0)
                    for i in range(hs):
                        acc = fma(qkv[b, t, h * hs + i], qkv[b, t2, C + h * hs + i], acc)
                    att[b, h, t, t2] = acc * scale
                    maxval = max(maxval, att[b, h, t, t2])
                expsum = F32(0.0)
                for t2 in range(t + 1):
                    att[b, h, t, t2] = exp_f32(att[b, h, t, t2] - maxval)
                    expsum += att[b, h, t, t2]
                inv = F32(1.0) / expsum
                for t2 in range(t + 1):
                    att[b, h, t, t2] = att[b, h, t, t2] * inv
                for i in range(hs):
                    acc = F32(0.0)
                    for t2 in range(t + 1):
                        acc = fma(att[b, h, t, t2], qkv[b, t2, 2 * C + h * hs + i], acc)
                    out[b, t, h * hs + i] = acc


@numba.njit(error_model="numpy")
def _reference_backward(dqkv, dout, qkv, att, n_head):
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    scale = F32(1.0) / math.sqrt(F32(hs))
    q0, k0, v0 = 0, C, 2 * C
    for b in range(B):
        for h in range(n_head):
            o = h * hs
            for t in range(T):
                datt = np.zeros(T, np.float32)
                for t2 in range(t + 1):
                    for i in range(hs):
                        datt[t2] = fma(dout[b, t, o + i], qkv[b, t2, v0 + o + i], datt[t2])
                    for i in range(hs):
                        dqkv[b, t2, v0 + o + i] = fma(att[b, h, t, t2], dout[b, t, o + i],
                                                      dqkv[b, t2, v0 + o + i])
                w = F32(0.0)
                for t2 in range(t + 1):
                    w = fma(att[b, h, t, t2], datt[t2], w)
                for t2 in range(t + 1):
                    dpre = att[b, h, t, t2] * (datt[t2] - w) * scale
                    for i in range(hs):
                        dqkv[b, t, q0 + o + i] = fma(dpre, qkv[b, t2, k0 + o + i], dqkv[b, t, q0 + o + i])
                        dqkv[b, t2, k0 + o + i] = fma(dpre, qkv[b, t, q0 + o + i], dqkv[b, t2, k0 + o + i])


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint32)


def _run_both(qkv: np.ndarray, dout: np.ndarray, dqkv0: np.ndarray, n_head: int):
    B, T, C3 = qkv.shape
    runs = []
    for forward, backward in ((attention_forward, attention_backward),
                              (_reference_forward, _reference_backward)):
        out = np.zeros((B, T, C3 // 3), F32)
        att = np.full((B, n_head, T, T), F32(7.0))  # the upper triangle must come back zero
        forward(out, att, qkv, n_head)
        dqkv = dqkv0.copy()
        backward(dqkv, dout, qkv, att, n_head)
        runs.append((out, att, dqkv))
    return runs


@pytest.mark.parametrize("B,T,C,n_head", [
    (1, 1, 8, 1), (2, 5, 16, 2), (1, 13, 48, 1), (2, 37, 96, 2), (1, 64, 128, 4), (1, 70, 64, 1),
])
def test_tiled_attention_gives_the_contract_s_bits(B, T, C, n_head):
    rng = np.random.default_rng(T * 1000 + C)
    qkv = rng.standard_normal((B, T, 3 * C)).astype(F32) * F32(1.5)
    dout = rng.standard_normal((B, T, C)).astype(F32)
    dqkv0 = rng.standard_normal((B, T, 3 * C)).astype(F32)  # backward accumulates into it
    (out, att, dqkv), (ref_out, ref_att, ref_dqkv) = _run_both(qkv, dout, dqkv0, n_head)
    for name, got, want in (("out", out, ref_out), ("att", att, ref_att), ("dqkv", dqkv, ref_dqkv)):
        assert np.array_equal(_bits(got), _bits(want)), f"{name}: {np.sum(_bits(got) != _bits(want))} elements differ"
    assert not np.any(np.triu(att[0, 0], 1)), "the forward left the masked part of att"


def test_an_infinity_in_a_later_position_leaves_earlier_rows_alone():
    # A chain that took a masked term would compute 0 * inf = NaN in earlier rows.
    B, T, C, n_head = 1, 40, 32, 1
    rng = np.random.default_rng(3)
    qkv = rng.standard_normal((B, T, 3 * C)).astype(F32)
    dout = rng.standard_normal((B, T, C)).astype(F32)
    qkv[0, 30, 2 * C + 5] = np.inf   # a value of position 30
    dout[0, 20, 3] = np.inf          # an output gradient of position 20
    (out, att, dqkv), (ref_out, ref_att, ref_dqkv) = _run_both(qkv, dout, np.zeros((B, T, 3 * C), F32), n_head)
    assert np.array_equal(_bits(out), _bits(ref_out))
    assert np.array_equal(_bits(dqkv), _bits(ref_dqkv))
    assert np.isfinite(out[0, :30]).all()
    # dq is finite in every row that neither is the infinite gradient's nor sees the value
    assert np.isfinite(dqkv[0, [*range(20), *range(21, 30)], :C]).all()
