"""GELU (tanh approximation) on CUDA: kernels/gelu.py's arithmetic, bit for bit.

The CPU evaluates products left to right, e.g. GELU_COEF * x * x * x is
((GELU_COEF * x) * x) * x; the nesting below keeps that order.
"""
from numba import cuda

from kernels.cuda.fp import THREADS, blocks, fadd, fmul, fsub
from kernels.cuda.mathfn import tanh_f32
from kernels.gelu import GELU_COEF, GELU_COEF3, HALF, ONE, SQRT_2_OVER_PI


@cuda.jit
def _gelu_forward(out, inp):
    i = cuda.grid(1)
    if i < inp.size:
        x = inp[i]
        cube = fmul(fmul(fmul(GELU_COEF, x), x), x)
        th = tanh_f32(fmul(SQRT_2_OVER_PI, fadd(x, cube)))
        out[i] = fmul(fmul(HALF, x), fadd(ONE, th))


@cuda.jit
def _gelu_backward(dinp, inp, dout):
    i = cuda.grid(1)
    if i < inp.size:
        x = inp[i]
        cube = fmul(fmul(fmul(GELU_COEF, x), x), x)
        th = tanh_f32(fmul(SQRT_2_OVER_PI, fadd(x, cube)))
        sech2 = fsub(ONE, fmul(th, th))
        inner_grad = fmul(SQRT_2_OVER_PI, fadd(ONE, fmul(fmul(GELU_COEF3, x), x)))
        local_grad = fadd(fmul(HALF, fadd(ONE, th)),
                          fmul(fmul(fmul(HALF, x), sech2), inner_grad))
        dinp[i] = fadd(dinp[i], fmul(local_grad, dout[i]))


def gelu_forward(out, inp) -> None:
    """out = gelu(inp) elementwise on flat float32 arrays."""
    _gelu_forward[blocks(inp.size), THREADS](out, inp)


def gelu_backward(dinp, inp, dout) -> None:
    """dinp += gelu'(inp) * dout elementwise on flat float32 arrays."""
    _gelu_backward[blocks(inp.size), THREADS](dinp, inp, dout)
