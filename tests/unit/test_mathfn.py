"""Accuracy, special values and float32/FMA purity of kernels.mathfn."""
import re

import numba
import numpy as np
import pytest

from kernels import mathfn as M
from kernels.fp import bits_f32, f32_bits, fma
from kernels.mathfn import exp_f32, log_f32, tanh_f32
from tests.kernel_oracles import exp_array, log_array, tanh_array

MAX_ULP = 2.0
MIN_INPUTS = 1_000_000
F32 = np.float32


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def from_bits(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.int64).astype(np.uint32).view(np.float32)


def bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def next_up(x: float) -> np.float32:
    return np.nextafter(F32(x), F32(np.inf))


def next_down(x: float) -> np.float32:
    return np.nextafter(F32(x), F32(-np.inf))


def strided(lo: float, hi: float, count: int) -> np.ndarray:
    """count float32 values evenly spaced in bit pattern between lo and hi (same sign)."""
    b = np.linspace(int(bits(F32(lo))), int(bits(F32(hi))), count).round()
    return from_bits(b)


def around(x: float, count: int) -> np.ndarray:
    """The count float32 values on either side of x (same sign), x included."""
    b = int(bits(F32(x)))
    return from_bits(np.arange(b - count, b + count + 1))


def ulp_errors(result: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|result - ref| in units of ulp(ref rounded to float32); 2^-149 for subnormals.

    Where the rounded reference is ±inf the result must equal it exactly.
    """
    with np.errstate(over="ignore"):
        ref32 = ref.astype(np.float32)
    ulp = np.spacing(np.abs(ref32)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(result.astype(np.float64) - ref) / ulp
    inf = np.isinf(ref32)
    err[inf] = np.where(result[inf] == ref32[inf], 0.0, np.inf)
    return err


def check_accuracy(fn, ref, x: np.ndarray) -> None:
    assert x.dtype == np.float32 and x.size >= MIN_INPUTS and np.isfinite(x).all()
    result = fn(x)
    assert result.dtype == np.float32
    err = ulp_errors(result, ref(x.astype(np.float64)))
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP, (
        f"max error {err[worst]:.3f} ulp over {x.size} inputs at x={x[worst]!r}: "
        f"got {result[worst]!r}, want {ref(np.float64(x[worst]))!r}")


def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


# --- accuracy -------------------------------------------------------------

def test_exp_accuracy():
    r = rng()
    x = np.concatenate([
        strided(0.0, 88.72283, 300_000),
        strided(-0.0, -103.97207, 300_000),
        r.uniform(-104.0, 89.0, 300_000).astype(F32),
        r.uniform(-104.0, -87.0, 100_000).astype(F32),  # subnormal results
        r.uniform(-1.0, 1.0, 100_000).astype(F32),
        around(88.72283172607422, 1000),
        around(-103.97207641601562, 1000),
    ])
    check_accuracy(exp_array, np.exp, x)


def test_log_accuracy():
    r = rng()
    x = np.concatenate([
        strided(0.0, 3.4028235e38, 600_000)[1:],  # every binade, subnormals included
        r.uniform(0.5, 2.0, 300_000).astype(F32),  # around log(x) = 0
        from_bits(r.integers(1, 0x00800000, 100_000)),  # subnormal inputs
        around(1.0, 5000),
    ])
    check_accuracy(log_array, np.log, x)


def test_tanh_accuracy():
    r = rng()
    x = np.concatenate([
        strided(0.0, 10.0, 250_000),
        strided(-0.0, -10.0, 250_000),
        r.uniform(-10.0, 10.0, 200_000).astype(F32),
        r.uniform(-0.01, 0.01, 100_000).astype(F32),
        r.uniform(0.9, 1.1, 100_000).astype(F32),  # polynomial / exp switch at 1
        r.uniform(-1.1, -0.9, 100_000).astype(F32),
        around(1.0, 2000),
        around(9.010912895202637, 2000),
    ])
    check_accuracy(tanh_array, np.tanh, x)


# --- special values -------------------------------------------------------

def test_exp_special_values():
    x = f32(0.0, -0.0, np.inf, -np.inf, np.nan)
    y = exp_array(x)
    assert y[0] == 1.0 and y[1] == 1.0
    assert y[2] == np.inf
    assert bits(y[3]) == 0  # +0
    assert np.isnan(y[4])


def test_exp_overflow_boundary():
    largest = F32(88.72283172607422)
    y = exp_array(f32(largest, next_up(largest), 89.0, 1e30, 3.4028235e38))
    assert y[0] == F32(3.4027985e38)  # exp(largest) rounded, finite
    assert np.all(y[1:] == np.inf)


def test_exp_underflow_boundary():
    smallest = F32(-103.97207641601562)
    y = exp_array(f32(smallest, next_down(smallest), -104.0, -1e30, -3.4028235e38))
    assert bits(y[0]) == 1  # 2^-149
    assert np.all(bits(y[1:]) == 0)


def test_log_special_values():
    x = f32(1.0, 0.0, -0.0, -1.0, -1e-45, -np.inf, np.inf, np.nan)
    y = log_array(x)
    assert bits(y[0]) == 0  # +0 exactly
    assert y[1] == -np.inf and y[2] == -np.inf
    assert np.isnan(y[3:6]).all()
    assert y[6] == np.inf
    assert np.isnan(y[7])


def test_log_subnormal_inputs():
    x = from_bits([1, 2, 3, 0x1234, 0x00400000, 0x007FFFFF])
    err = ulp_errors(log_array(x), np.log(x.astype(np.float64)))
    assert err.max() <= MAX_ULP
    assert log_array(from_bits([1]))[0] == F32(np.log(2.0 ** -149))


def test_tanh_special_values():
    x = f32(0.0, -0.0, np.inf, -np.inf, np.nan)
    y = tanh_array(x)
    assert bits(y[0]) == bits(F32(0.0)) and bits(y[1]) == bits(F32(-0.0))
    assert y[2] == 1.0 and y[3] == -1.0
    assert np.isnan(y[4])


def test_tanh_saturation_boundary():
    edge = F32(9.010912895202637)  # largest x with tanh(x) < 1
    y = tanh_array(f32(edge, next_up(edge), -next_up(edge), 20.0, -3.4028235e38))
    assert y[0] == next_down(1.0)
    assert list(y[1:]) == [1.0, -1.0, 1.0, -1.0]


def test_tanh_subnormal_inputs_return_input():
    x = from_bits([1, 2, 0x1234, 0x007FFFFF, 0x80000001, 0x807FFFFF])
    assert np.array_equal(bits(tanh_array(x)), bits(x))


# --- tanh, branch-free, against its definition written with branches -----

# Not cached: a cached function keeps the old code of what it inlines after an edit.
@numba.njit(error_model="numpy")
def _tanh_with_branches(x):
    """The definition kernels.mathfn.tanh_f32 selects from, as kernels/cuda/mathfn.py
    writes it: one form per range of |x|."""
    if x != x:
        return x
    ix = f32_bits(x)
    ax = bits_f32(np.int32(ix & M._SIGN_MASK))
    if ax < M._TANH_TINY_X:
        return x
    if ax < M._TANH_POLY_MAX:
        u = x * x
        q = fma(u, M._T6, M._T5)
        for coefficient in (M._T4, M._T3, M._T2, M._T1, M._T0):
            q = fma(q, u, coefficient)
        return fma(x * u, q, x)
    y = M._ONE if ax > M._TANH_ONE_X else M._ONE - M._TWO / (exp_f32(M._TWO * ax) + M._ONE)
    return bits_f32(np.int32(f32_bits(y) | (ix & ~M._SIGN_MASK)))


@numba.njit(parallel=True, error_model="numpy")
def _tanh_mismatches(tasks):
    """How many of the 2^32 float32 bit patterns tanh_f32 maps to other bits than
    _tanh_with_branches."""
    counts = np.zeros(tasks, np.int64)
    span = (1 << 32) // tasks
    for task in numba.prange(tasks):
        for k in range(task * span, (task + 1) * span):
            x = bits_f32(np.int32(np.uint32(k)))
            if f32_bits(tanh_f32(x)) != f32_bits(_tanh_with_branches(x)):
                counts[task] += 1
    return counts.sum()


@pytest.mark.slow
def test_tanh_gives_its_definition_s_bits_for_every_float32():
    assert _tanh_mismatches(256) == 0


# --- float32 purity -------------------------------------------------------

# No cache=True below: a function loaded from numba's cache carries no LLVM IR.
@numba.njit
def _mul_add(a, b, c):
    return a * b + c


@numba.njit
def _fused(a, b, c):
    return fma(a, b, c)


def test_llvm_does_not_contract_and_fma_fuses():
    a = F32(1.0 + 2.0 ** -12)  # a*a = 1 + 2^-11 + 2^-24: the 2^-24 is lost when rounded
    c = F32(-(1.0 + 2.0 ** -11))
    assert _mul_add(a, a, c) == 0.0
    assert _fused(a, a, c) == 2.0 ** -24
    sig = (numba.float32, numba.float32, numba.float32)
    assert "fma" not in _main_function_ir(_mul_add, sig)
    assert "@llvm.fma.f32" in _main_function_ir(_fused, sig)


def _main_function_ir(dispatcher, sig) -> str:
    """The optimized LLVM IR of the compiled function itself, without the
    Python wrappers (which box float32 results as double)."""
    dispatcher.compile(sig)
    ir = dispatcher.inspect_llvm(sig)
    bodies = [m.group(0) for m in re.finditer(r"^define [^\n]*@_ZN.*?^}", ir, re.M | re.S)
              if "@_ZN7cpython" not in m.group(0).splitlines()[0]]
    assert len(bodies) == 1
    return bodies[0]


@numba.njit
def _call_exp(x):
    return exp_f32(x)


@numba.njit
def _call_log(x):
    return log_f32(x)


@numba.njit
def _call_tanh(x):
    return tanh_f32(x)


@pytest.mark.parametrize("dispatcher", [_call_exp, _call_log, _call_tanh])
def test_llvm_ir_is_float32_only(dispatcher):
    body = _main_function_ir(dispatcher, (numba.float32,))
    assert "double" not in body and "fpext" not in body
    callees = set(re.findall(r"\bcall [^@]*@([\w.]+)\(", body))
    # fabs is an exact sign-bit clear, which LLVM recognises in the bit masking.
    assert "llvm.fma.f32" in callees and callees <= {"llvm.fma.f32", "llvm.fabs.f32"}, callees
