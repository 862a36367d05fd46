"""Counter-based integer random numbers: a value is a pure function of (key, counter).

No generator state is carried between calls, so any draw can be re-derived by an
auditor from the key and its counter alone, on any device, in any order.
"""
import numba
import numpy as np

from kernels.fp import kernel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S40 = np.uint64(40)
_TWO_POW_M24 = np.float32(2.0**-24)


@kernel(inline="always")
def mix64(x: np.uint64) -> np.uint64:
    """SplitMix64's finalizer: a bijection on 64-bit integers with full avalanche."""
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    return x ^ (x >> _S31)


@kernel(inline="always")
def random_u64(key: np.uint64, counter: np.uint64) -> np.uint64:
    """The counter-th 64-bit draw of the stream named by key."""
    return mix64(mix64(key) + counter * _GOLDEN + _GOLDEN)


@kernel(inline="always")
def random_unit_f32(key: np.uint64, counter: np.uint64) -> np.float32:
    """A float32 uniform on [0, 1) with 24 random bits (exact, no rounding)."""
    return np.float32(np.int32(random_u64(key, counter) >> _S40)) * _TWO_POW_M24


@kernel()
def derive_key(key: np.uint64, label: np.uint64) -> np.uint64:
    """A sub-stream key, e.g. one per tensor from the model's init seed."""
    return mix64(key ^ mix64(label + _GOLDEN))


@kernel(parallel=True)
def fill_uniform(out, key, bound):
    """out[i] = (2u - 1) * bound with u = random_unit_f32(key, i): uniform on [-bound, bound)."""
    two = np.float32(2.0)
    one = np.float32(1.0)
    for i in numba.prange(out.size):
        out[i] = (two * random_unit_f32(key, np.uint64(i)) - one) * bound
