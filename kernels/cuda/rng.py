"""fill_uniform on CUDA: kernels/rng.py's counter-based generator, one thread per element."""
import numpy as np
from numba import cuda

from kernels.cuda.fp import THREADS, blocks, device, fmul, fsub
from kernels.rng import _GOLDEN, _MIX1, _MIX2, _S27, _S30, _S31, _S40, _TWO_POW_M24

_ONE = np.float32(1.0)
_TWO = np.float32(2.0)


@device
def _mix64(x):
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    return x ^ (x >> _S31)


@device
def _random_unit_f32(key, counter):
    u = _mix64(_mix64(key) + counter * _GOLDEN + _GOLDEN)
    return fmul(np.float32(np.int32(u >> _S40)), _TWO_POW_M24)


@cuda.jit
def _fill_uniform(out, key, bound):
    i = cuda.grid(1)
    if i < out.size:
        u = _random_unit_f32(key, np.uint64(i))
        out[i] = fmul(fsub(fmul(_TWO, u), _ONE), bound)


def fill_uniform(out, key: np.uint64, bound: np.float32) -> None:
    """out[i] = (2u - 1) * bound with u the i-th draw of key; out flat float32."""
    _fill_uniform[blocks(out.size), THREADS](out, np.uint64(key), np.float32(bound))
