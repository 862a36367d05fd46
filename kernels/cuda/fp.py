"""float32 primitives for the CUDA kernels (DESIGN.md §3).

Every product and sum that the CPU kernel keeps separate goes through ``fmul``/``fadd``
(libdevice's ``*_rn``, PTX ``mul.rn``/``add.rn``): numba-cuda contracts a bare
``a * b + c`` into ``fma.rn.f32`` even with fastmath off, and ptxas may fuse a PTX
``mul.f32``/``add.f32`` that has no rounding suffix.  ``fma`` is the only fused
multiply-add, exactly where the CPU kernel calls ``kernels.fp.fma``.

Under the simulator (NUMBA_ENABLE_CUDASIM=1) kernels run as Python: its ``cuda.fma`` is
``a*b+c`` with two roundings and libdevice has no Python body, so the same names are
bound to single-rounding numpy and numba (the CPU ``llvm.fma.f32``) equivalents.
"""
import numba
import numpy as np
from numba import config, cuda

if config.ENABLE_CUDASIM:
    from kernels.fp import fma as _cpu_fma

    @numba.njit
    def _fma_f32(a, b, c):
        return _cpu_fma(a, b, c)

    def fma(a, b, c):
        return np.float32(_fma_f32(np.float32(a), np.float32(b), np.float32(c)))

    def fmul(a, b):
        return np.float32(a) * np.float32(b)

    def fadd(a, b):
        return np.float32(a) + np.float32(b)

    def fsub(a, b):
        return np.float32(a) - np.float32(b)

    def fdiv(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.float32(a) / np.float32(b)

    def fsqrt(a):
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.float32(a))

    def f32_bits(x):
        return np.float32(x).view(np.int32)

    def bits_f32(i):
        return np.int32(i).view(np.float32)
else:
    from numba.cuda import libdevice

    # cuda.fma is typed only as that attribute, not through another global name.
    @cuda.jit(device=True, forceinline=True)
    def fma(a, b, c):
        return cuda.fma(a, b, c)

    fmul = libdevice.fmul_rn
    fadd = libdevice.fadd_rn
    fsub = libdevice.fsub_rn
    fdiv = libdevice.fdiv_rn
    fsqrt = libdevice.fsqrt_rn
    f32_bits = libdevice.float_as_int
    bits_f32 = libdevice.int_as_float

# Device functions are inlined into each kernel (NVVM alwaysinline), so the PTX of a
# kernel holds one fma per fma call site, which the PTX test counts.  The simulator
# has no forceinline option and needs none.
device = cuda.jit(device=True) if config.ENABLE_CUDASIM else cuda.jit(device=True, forceinline=True)

THREADS = 128


def blocks(n: int, threads: int = THREADS) -> int:
    """Enough blocks of ``threads`` to give each of n outputs a thread (at least one)."""
    return max(1, (n + threads - 1) // threads)
