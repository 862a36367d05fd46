"""exp, log and tanh as CUDA device functions: kernels/mathfn.py line for line.

Same constants (imported, so they cannot drift), same branch structure, the same
explicit fma calls; every other product and sum is a round-to-nearest libdevice op so
that nothing is contracted.
"""
import numpy as np

from kernels.cuda.fp import bits_f32, device, f32_bits, fadd, fdiv, fma, fmul, fsub
from kernels.mathfn import (
    _E2, _E3, _E4, _E5, _E6, _E7, _EXP_MAX_X, _EXP_MIN_X, _HALF, _INF, _L1, _L2, _L3, _L4,
    _LN2_HI, _LN2_LO, _LOG2E, _MANT_MASK, _MIN_NORMAL_BITS, _NAN, _ONE, _ONE_BITS,
    _ROUND_SHIFT, _ROUND_SHIFT_BITS, _SIGN_MASK, _SQRT2_MANT, _T0, _T1, _T2, _T3, _T4, _T5,
    _T6, _TANH_ONE_X, _TANH_POLY_MAX, _TANH_TINY_X, _TWO, _TWO_127, _TWO_25, _TWO_M64, _ZERO,
)

_SIGN_BIT = np.int32(-0x80000000)  # ~_SIGN_MASK as an int32


@device
def _pow2(k):
    """2^k as float32 for -126 <= k <= 127, built from exponent bits."""
    return bits_f32(np.int32((k + 127) << 23))


@device
def exp_f32(x):
    """e^x in float32: the bits of kernels.mathfn.exp_f32."""
    if x != x:
        return x
    if x > _EXP_MAX_X:
        return _INF
    if x < _EXP_MIN_X:
        return _ZERO
    t = fma(x, _LOG2E, _ROUND_SHIFT)
    n = f32_bits(t) - _ROUND_SHIFT_BITS
    nf = fsub(t, _ROUND_SHIFT)
    r = fma(-nf, _LN2_HI, x)
    r = fma(-nf, _LN2_LO, r)
    p = fma(_E7, r, _E6)
    p = fma(p, r, _E5)
    p = fma(p, r, _E4)
    p = fma(p, r, _E3)
    p = fma(p, r, _E2)
    p = fma(p, r, _ONE)
    p = fma(p, r, _ONE)
    if n > 127:
        return fmul(fmul(p, _TWO_127), _pow2(n - 127))
    if n < -125:
        return fmul(fmul(p, _pow2(n + 64)), _TWO_M64)
    return fmul(p, _pow2(n))


@device
def log_f32(x):
    """Natural log in float32: the bits of kernels.mathfn.log_f32."""
    if x != x:
        return x
    if x == _ZERO:
        return -_INF
    if x < _ZERO:
        return _NAN
    if x == _INF:
        return x
    ix = f32_bits(x)
    k = 0
    if ix < _MIN_NORMAL_BITS:
        ix = f32_bits(fmul(x, _TWO_25))
        k = -25
    k += (ix >> 23) - 127
    mant = ix & _MANT_MASK
    m = bits_f32(np.int32(mant | _ONE_BITS))
    if mant > _SQRT2_MANT:
        m = fmul(m, _HALF)
        k += 1
    f = fsub(m, _ONE)
    dk = np.float32(k)
    s = fdiv(f, fadd(_TWO, f))
    z = fmul(s, s)
    w = fma(z, _L4, _L3)
    w = fma(w, z, _L2)
    w = fma(w, z, _L1)
    big_r = fmul(w, z)
    hfsq = fmul(fmul(_HALF, f), f)
    t = fma(s, fadd(hfsq, big_r), fmul(dk, _LN2_LO))
    return fma(dk, _LN2_HI, fsub(f, fsub(hfsq, t)))


@device
def tanh_f32(x):
    """tanh in float32: the bits of kernels.mathfn.tanh_f32."""
    if x != x:
        return x
    ix = f32_bits(x)
    ax = bits_f32(np.int32(ix & _SIGN_MASK))
    if ax < _TANH_TINY_X:
        return x
    if ax < _TANH_POLY_MAX:
        u = fmul(x, x)
        q = fma(u, _T6, _T5)
        q = fma(q, u, _T4)
        q = fma(q, u, _T3)
        q = fma(q, u, _T2)
        q = fma(q, u, _T1)
        q = fma(q, u, _T0)
        return fma(fmul(x, u), q, x)
    if ax > _TANH_ONE_X:
        y = _ONE
    else:
        y = fsub(_ONE, fdiv(_TWO, fadd(exp_f32(fmul(_TWO, ax)), _ONE)))
    return bits_f32(np.int32(f32_bits(y) | (ix & _SIGN_BIT)))
