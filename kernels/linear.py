"""Fully connected layer y = x W + b, forward and backward, on top of matmul_acc.

Weights are (in, out), as in GPT-2's checkpoints.  Every product is matmul_acc's
fixed-order FMA chain; it reads the transposed operands as views, in place.
"""
import numba
import numpy as np

from kernels.matmul import matmul_acc
from kernels.fp import kernel


def linear_forward(out, inp, weight, bias) -> None:
    """out (N,OC) = bias + inp (N,C) @ weight (C,OC), each output starting from its bias."""
    out[:] = bias
    matmul_acc(inp, weight, out)


BIAS_BLOCK = 64


@kernel(parallel=True)
def bias_backward(dbias, dout):
    """dbias += sum over rows of dout, rows in ascending order.  Parallel over blocks
    of columns; within a block the rows stream by and the columns vectorize."""
    N, OC = dout.shape
    for block in numba.prange((OC + BIAS_BLOCK - 1) // BIAS_BLOCK):
        o0 = block * BIAS_BLOCK
        width = min(BIAS_BLOCK, OC - o0)
        acc = np.empty(width, np.float32)
        for o in range(width):
            acc[o] = dbias[o0 + o]
        for i in range(N):
            for o in range(width):
                acc[o] += dout[i, o0 + o]
        for o in range(width):
            dbias[o0 + o] = acc[o]


def linear_backward(dinp, dweight, dbias, dout, inp, weight) -> None:
    """dinp += dout W^T;  dweight += inp^T dout;  dbias += column sums of dout."""
    matmul_acc(dout, weight.T, dinp)
    matmul_acc(inp.T, dout, dweight)
    bias_backward(dbias, dout)
