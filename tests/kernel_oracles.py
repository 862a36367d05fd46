"""Elementwise maps of kernels.mathfn's float32 functions: what the tests compare with
NumPy's float64 results (tests/unit/test_mathfn.py) and with the CUDA port's bits
(tests/gpu/cuda_checks.py).  The product calls the scalar functions inside its
kernels and needs no array forms."""
import numpy as np

from kernels.fp import kernel
from kernels.mathfn import exp_f32, log_f32, tanh_f32


@kernel()
def exp_array(x):
    """exp_f32 of each element of a 1-D float32 array."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = exp_f32(x[i])
    return out


@kernel()
def log_array(x):
    """log_f32 of each element of a 1-D float32 array."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = log_f32(x[i])
    return out


@kernel()
def tanh_array(x):
    """tanh_f32 of each element of a 1-D float32 array."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = tanh_f32(x[i])
    return out
