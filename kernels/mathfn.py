"""float32 exp, log and tanh for the verified path (DESIGN.md §3).

Built only from + - * /, explicit ``fma`` and integer bit manipulation, in a
written-out order, so that the CUDA port (``cuda.fma`` line for line) gives
the same bits. Every constant is a float32 global: a bare Python float would
make numba compute in float64. fastmath stays off.
"""
import numpy as np

from kernels.fp import bits_f32, f32_bits, fma, kernel

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_TWO = np.float32(2.0)
_INF = np.float32(np.inf)
_NAN = np.float32(np.nan)

# ln2 = _LN2_HI + _LN2_LO; _LN2_HI has 16 significant bits, so for the |n| <= 150
# of exp, x - n*_LN2_HI is exact and only the _LN2_LO step rounds.
_LN2_HI = np.float32(0.693145751953125)  # 0x3f317200
_LN2_LO = np.float32(0.6931471805599453 - 0.693145751953125)
_LOG2E = np.float32(1.4426950408889634)
# Adding 1.5*2^23 rounds any |v| < 2^22 to the nearest integer (ties to even).
_ROUND_SHIFT = np.float32(12582912.0)

# Largest x whose exp rounds to a finite float32; smallest x whose exp rounds above 0.
_EXP_MAX_X = np.float32(88.72283172607422)  # 0x42b17217
_EXP_MIN_X = np.float32(-103.97207641601562)  # -0x1.9fe368p6
_TWO_M64 = np.float32(2.0 ** -64)
_TWO_127 = np.float32(2.0 ** 127)

# exp(r) on |r| <= ln2/2: Taylor to degree 7, truncation < 7.5e-9 relative.
_E2 = np.float32(1.0 / 2.0)
_E3 = np.float32(1.0 / 6.0)
_E4 = np.float32(1.0 / 24.0)
_E5 = np.float32(1.0 / 120.0)
_E6 = np.float32(1.0 / 720.0)
_E7 = np.float32(1.0 / 5040.0)

# log(1+f) = f - s*(f - R(s^2)) with s = f/(2+f); R is the atanh series
# 2z/3 + 2z^2/5 + 2z^3/7 + 2z^4/9, truncation < 2.1e-9 relative for |s| < 0.1716.
_L1 = np.float32(2.0 / 3.0)
_L2 = np.float32(2.0 / 5.0)
_L3 = np.float32(2.0 / 7.0)
_L4 = np.float32(2.0 / 9.0)
_TWO_25 = np.float32(2.0 ** 25)

# tanh(x) = x + x^3*Q(x^2) below _TANH_POLY_MAX; coefficients from
# scripts/fit_tanh_poly.py (minimax for relative error of tanh).
_TANH_POLY_MAX = np.float32(1.0)
_T0 = np.float32(-0.33333295583724976)
_T1 = np.float32(0.13332347571849823)
_T2 = np.float32(-0.0538799911737442)
_T3 = np.float32(0.021487198770046234)
_T4 = np.float32(-0.007946893572807312)
_T5 = np.float32(0.0023019297514110804)
_T6 = np.float32(-0.00035861122887581587)
# Largest x with tanh(x) < 1 in float32 (just below 13*ln2, where 1 - tanh = 2^-25).
_TANH_ONE_X = np.float32(9.010912895202637)  # 0x41102cb3
# Below 2^-12, x^3/3 is under half an ulp of x, so tanh(x) rounds to x; this
# also keeps the sign of -0, which x + x^3*Q would turn into +0.
_TANH_TINY_X = np.float32(2.0 ** -12)

_SIGN_MASK = 0x7FFFFFFF  # int32 mask that clears the sign bit
_MANT_MASK = 0x007FFFFF
_ONE_BITS = 0x3F800000
_SQRT2_MANT = 0x003504F3  # mantissa bits of sqrt(2)
_MIN_NORMAL_BITS = 0x00800000
_ROUND_SHIFT_BITS = 0x4B400000  # f32_bits(_ROUND_SHIFT)


@kernel(inline="always")
def _pow2(k):
    """2^k as float32 for -126 <= k <= 127, built from exponent bits."""
    return bits_f32(np.int32((k + 127) << 23))


@kernel(inline="always")
def _exp_reduced(x):
    """(p, n) with e^x = p * 2^n, for x between _EXP_MIN_X and _EXP_MAX_X."""
    t = fma(x, _LOG2E, _ROUND_SHIFT)
    n = f32_bits(t) - _ROUND_SHIFT_BITS
    nf = t - _ROUND_SHIFT
    # x - n*ln2 in two steps; the first is exact (Cody-Waite).
    r = fma(-nf, _LN2_HI, x)
    r = fma(-nf, _LN2_LO, r)
    p = fma(_E7, r, _E6)
    p = fma(p, r, _E5)
    p = fma(p, r, _E4)
    p = fma(p, r, _E3)
    p = fma(p, r, _E2)
    p = fma(p, r, _ONE)
    p = fma(p, r, _ONE)
    return p, n


@kernel(inline="always")
def exp_f32(x):
    """e^x in float32, error within 2 ulp; NaN, ±inf and underflow exact."""
    if x != x:
        return x
    if x > _EXP_MAX_X:
        return _INF
    if x < _EXP_MIN_X:
        return _ZERO
    p, n = _exp_reduced(x)
    # Scale by 2^n; out-of-range n is split so only the last multiply rounds.
    if n > 127:
        return p * _TWO_127 * _pow2(n - 127)
    if n < -125:
        return p * _pow2(n + 64) * _TWO_M64
    return p * _pow2(n)


@kernel(inline="always")
def log_f32(x):
    """Natural log in float32, error within 2 ulp; log(1) = 0 exactly."""
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
        ix = f32_bits(x * _TWO_25)  # exact: subnormals become normal
        k = -25
    k += (ix >> 23) - 127
    mant = ix & _MANT_MASK
    m = bits_f32(np.int32(mant | _ONE_BITS))  # in [1, 2)
    if mant > _SQRT2_MANT:
        m = m * _HALF  # keep m in [sqrt(2)/2, sqrt(2)) so f stays small
        k += 1
    f = m - _ONE  # exact (Sterbenz)
    dk = np.float32(k)
    s = f / (_TWO + f)
    z = s * s
    w = fma(z, _L4, _L3)
    w = fma(w, z, _L2)
    w = fma(w, z, _L1)
    big_r = w * z
    hfsq = _HALF * f * f
    t = fma(s, hfsq + big_r, dk * _LN2_LO)
    return fma(dk, _LN2_HI, f - (hfsq - t))


@kernel(inline="always")
def tanh_f32(x):
    """tanh in float32, error within 2 ulp; keeps the sign of ±0.

    By range of |x|: x itself below _TANH_TINY_X (and for NaN); x + x^3*Q(x^2) below
    _TANH_POLY_MAX; 1 - 2/(e^(2|x|) + 1) with x's sign up to _TANH_ONE_X; ±1 above.
    Every form is computed and one selected, with no branch, so that a loop over
    tanh vectorizes (GELU 15-20% faster); the bits are those of the same definition
    written with branches (kernels/cuda/mathfn.py), for all 2^32 inputs
    (tests/unit/test_mathfn.py).
    """
    ix = f32_bits(x)
    ax = bits_f32(np.int32(ix & _SIGN_MASK))
    u = x * x
    q = fma(u, _T6, _T5)
    q = fma(q, u, _T4)
    q = fma(q, u, _T3)
    q = fma(q, u, _T2)
    q = fma(q, u, _T1)
    q = fma(q, u, _T0)
    poly = fma(x * u, q, x)
    # 2|x| clamped to 2*_TANH_ONE_X < 19: exp_f32 of it is p * 2^n with 0 <= n < 28
    p, n = _exp_reduced(_TWO * (ax if ax < _TANH_ONE_X else _TANH_ONE_X))
    y = _ONE - _TWO / (p * _pow2(n) + _ONE)
    y = _ONE if ax > _TANH_ONE_X else y
    signed = bits_f32(np.int32(f32_bits(y) | (ix & ~_SIGN_MASK)))
    near = poly if ax < _TANH_POLY_MAX else signed
    return x if (ax < _TANH_TINY_X or x != x) else near
