"""GELU, GPT-2's tanh approximation, forward and backward.

gelu(x) = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), with the
project's own tanh so that the bits do not depend on a math library.
"""
import numba
import numpy as np

from kernels.mathfn import tanh_f32
from kernels.fp import kernel

SQRT_2_OVER_PI = np.float32(0.7978845608028654)
GELU_COEF = np.float32(0.044715)
GELU_COEF3 = np.float32(3.0 * 0.044715)
HALF = np.float32(0.5)
ONE = np.float32(1.0)


@kernel(parallel=True)
def gelu_forward(out, inp):
    """out = gelu(inp) elementwise on flat float32 arrays."""
    for i in numba.prange(inp.size):
        x = inp[i]
        cube = GELU_COEF * x * x * x
        th = tanh_f32(SQRT_2_OVER_PI * (x + cube))
        out[i] = HALF * x * (ONE + th)


@kernel(parallel=True)
def gelu_backward(dinp, inp, dout):
    """dinp += gelu'(inp) * dout elementwise on flat float32 arrays."""
    for i in numba.prange(inp.size):
        x = inp[i]
        cube = GELU_COEF * x * x * x
        th = tanh_f32(SQRT_2_OVER_PI * (x + cube))
        sech2 = ONE - th * th
        inner_grad = SQRT_2_OVER_PI * (ONE + GELU_COEF3 * x * x)
        local_grad = HALF * (ONE + th) + HALF * x * sech2 * inner_grad
        dinp[i] += local_grad * dout[i]
