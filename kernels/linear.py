"""Fully connected layer y = x W + b, forward and backward, on top of matmul_acc.

Weights are (in, out), as in GPT-2's checkpoints.  Every product is matmul_acc's
fixed-order FMA chain; it reads the transposed operands as views, in place.
"""

from kernels.matmul import matmul_acc
from kernels.fp import kernel


def linear_forward(out, inp, weight, bias) -> None:
    """out (N,OC) = bias + inp (N,C) @ weight (C,OC), each output starting from its bias."""
    out[:] = bias
    matmul_acc(inp, weight, out)


@kernel()
def bias_backward(dbias, dout):
    """dbias += sum over rows of dout, rows in ascending order: each row adds into every
    column's chain at once, a contiguous run that vectorizes.  One thread: a parallel
    loop over column blocks did not vectorize and took 9x as long (134 us against 15 at
    512 x 512)."""
    N, OC = dout.shape
    for i in range(N):
        for o in range(OC):
            dbias[o] += dout[i, o]


def linear_backward(dinp, dweight, dbias, dout, inp, weight) -> None:
    """dinp += dout W^T;  dweight += inp^T dout;  dbias += column sums of dout."""
    matmul_acc(dout, weight.T, dinp)
    matmul_acc(inp.T, dout, dweight)
    bias_backward(dbias, dout)
