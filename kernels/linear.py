"""Fully connected layer y = x W + b, forward and backward, on top of matmul_acc.

Weights are (in, out), as in GPT-2's checkpoints.  Every product is matmul_acc's
fixed-order FMA chain; the transposes are plain copies and change no bits.
"""
import numba
import numpy as np

from kernels.matmul import matmul_acc
from kernels.fp import kernel


def linear_forward(out, inp, weight, bias) -> None:
    """out (N,OC) = bias + inp (N,C) @ weight (C,OC), each output starting from its bias."""
    out[:] = bias
    matmul_acc(inp, weight, out)


@kernel(parallel=True)
def bias_backward(dbias, dout):
    """dbias += sum over rows of dout, rows in ascending order."""
    N, OC = dout.shape
    for o in numba.prange(OC):
        s = dbias[o]
        for i in range(N):
            s += dout[i, o]
        dbias[o] = s


def linear_backward(dinp, dweight, dbias, dout, inp, weight) -> None:
    """dinp += dout W^T;  dweight += inp^T dout;  dbias += column sums of dout."""
    matmul_acc(dout, np.ascontiguousarray(weight.T), dinp)
    matmul_acc(np.ascontiguousarray(inp.T), dout, dweight)
    bias_backward(dbias, dout)
