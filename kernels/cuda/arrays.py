"""Data movement on the device: zero-fill, copy and transpose without a trip to the host,
and the scratch buffers launchers keep.  Pure copies of float32 bits, no arithmetic."""
import functools

import numpy as np
from numba import cuda

from kernels.cuda.fp import blocks

THREADS = 256


@cuda.jit
def _fill_zero(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = np.float32(0.0)


@cuda.jit
def _copy(dst, src):
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = src[i]


@cuda.jit
def _transpose(dst, src):
    j, i = cuda.grid(2)
    if i < src.shape[0] and j < src.shape[1]:
        dst[j, i] = src[i, j]


def _flat(x):
    return x.reshape(x.size)


@functools.lru_cache(maxsize=64)
def scratch(purpose: str, shape: tuple[int, ...]):
    """A device buffer kept for one purpose at one shape, so that a launcher allocates
    once rather than on every call.  Kernels on one stream run in launch order, so the
    next call's writes never overtake this call's reads."""
    return cuda.device_array(shape, np.float32)


def zeros(shape):
    out = cuda.device_array(shape, np.float32)
    fill_zero(out)
    return out


def fill_zero(x) -> None:
    _fill_zero[blocks(x.size, THREADS), THREADS](_flat(x))


def copy_into(dst, src) -> None:
    """dst = src, both of one shape."""
    if dst.shape != src.shape:
        raise ValueError(f"copy of shape {src.shape} into {dst.shape}")
    _copy[blocks(src.size, THREADS), THREADS](_flat(dst), _flat(src))


def transpose_into(dst, src) -> None:
    """dst = src.T for a 2-D src, dst contiguous."""
    rows, cols = src.shape
    if dst.shape != (cols, rows):
        raise ValueError(f"transpose of shape {src.shape} into {dst.shape}")
    _transpose[((cols + 15) // 16, (rows + 15) // 16), (16, 16)](dst, src)
