"""Float32 primitives for the verified path: explicit FMA and bit casts.

numba compiles ``a * b + c`` to a separate multiply and add (fastmath off, so
LLVM may not contract them); ``fma`` below is the only way a fused
multiply-add enters a kernel, which keeps the CPU order identical to CUDA's
``cuda.fma``.
"""
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.compile_cache import use_cache_named_by_source

use_cache_named_by_source()  # before the first @kernel below or in any module that imports this

_F32 = ir.FloatType()
_I32 = ir.IntType(32)


def _all_f32(*tys) -> bool:
    return all(isinstance(t, types.Float) and t.bitwidth == 32 for t in tys)


@intrinsic
def fma(typingctx, a, b, c):
    """float32 a*b+c with one rounding (llvm.fma.f32)."""
    if not _all_f32(a, b, c):
        return None

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_F32, [_F32, _F32, _F32]), "llvm.fma.f32")
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@intrinsic
def f32_bits(typingctx, x):
    """The IEEE bits of a float32 as an int32."""
    if not _all_f32(x):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _I32)

    return types.int32(types.float32), codegen


@intrinsic
def bits_f32(typingctx, i):
    """The float32 whose IEEE bits are the int32 ``i``."""
    if not (isinstance(i, types.Integer) and i.bitwidth == 32):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _F32)

    return types.float32(types.int32), codegen


def kernel(**options):
    """numba.njit with the verified path's options: cached, fastmath never set, and
    IEEE division (x/0 gives inf or NaN, as on CUDA, instead of raising)."""
    return numba.njit(cache=True, error_model="numpy", **options)
