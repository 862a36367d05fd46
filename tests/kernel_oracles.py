"""Elementwise maps of kernels.mathfn's float32 functions: what the tests compare with
NumPy's float64 results (tests/unit/test_mathfn.py) and with the CUDA port's bits
(tests/gpu/cuda_checks.py).  The product calls the scalar functions inside its
kernels and needs no array forms."""
import numpy as np

from kernels.fp import kernel
from kernels.mathfn import exp_f32, log_f32, tanh_f32

_EXP, _LOG, _TANH = 0, 1, 2


@kernel()
def _map_f32(x, function):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        if function == _EXP:
            out[i] = exp_f32(x[i])
        elif function == _LOG:
            out[i] = log_f32(x[i])
        else:
            out[i] = tanh_f32(x[i])
    return out


def exp_array(x: np.ndarray) -> np.ndarray:
    """exp_f32 of each element of a 1-D float32 array."""
    return _map_f32(x, _EXP)


def log_array(x: np.ndarray) -> np.ndarray:
    """log_f32 of each element of a 1-D float32 array."""
    return _map_f32(x, _LOG)


def tanh_array(x: np.ndarray) -> np.ndarray:
    """tanh_f32 of each element of a 1-D float32 array."""
    return _map_f32(x, _TANH)
