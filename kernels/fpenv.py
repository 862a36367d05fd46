"""Runtime check that this process keeps IEEE subnormals (DESIGN.md §3).

A shared library built with -Ofast can set FTZ/DAZ for the whole process when
it is loaded; float32 results then stop being bit-exact, so a node must refuse
to train. The check multiplies values read from arrays (never constants that a
compiler could fold) in both numpy and numba, the two places kernels compute.
"""
import numpy as np

from kernels.fp import kernel

_FLT_MIN = np.float32(np.finfo(np.float32).tiny)  # 2^-126, smallest normal
_HALF_MIN_BITS = 0x00400000  # bits of 2^-127 = _FLT_MIN * 0.5, a subnormal
_SUB_BITS = 0x00000001  # bits of 2^-149, the smallest subnormal


class FloatingPointEnvironmentError(RuntimeError):
    """The FPU flushes subnormals, so float32 results would not be bit-exact."""


def _probe_inputs() -> tuple[np.ndarray, np.ndarray]:
    """Operands whose products are exactly 2^-127 (needs no FTZ) and 2^-149 (needs no DAZ)."""
    a = np.array([_FLT_MIN, np.int32(_SUB_BITS).view(np.float32)], dtype=np.float32)
    b = np.array([0.5, 1.0], dtype=np.float32)
    return a, b


@kernel()
def _numba_products(a, b):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = a[i] * b[i]
    return out


def _flushed(products: np.ndarray) -> bool:
    # Compare bits: under DAZ a float comparison would see the subnormal as 0.
    bits = products.view(np.int32)
    return not (bits[0] == _HALF_MIN_BITS and bits[1] == _SUB_BITS)


def subnormals_flushed() -> bool:
    """True if float32 arithmetic in numpy or numba code flushes subnormals (FTZ or DAZ)."""
    a, b = _probe_inputs()
    return _flushed(a * b) or _flushed(_numba_products(a, b))


def require_ieee_subnormals() -> None:
    """Raise FloatingPointEnvironmentError if this process flushes subnormals."""
    if subnormals_flushed():
        raise FloatingPointEnvironmentError(
            "this process flushes subnormal floats to zero (FTZ/DAZ set, often by a "
            "library built with -Ofast); refusing to train because results would not "
            "be bit-exact")
