"""Fully connected layer on CUDA: kernels/linear.py's arithmetic, bit for bit."""
from numba import cuda

from kernels.cuda.fp import THREADS, blocks, fadd
from kernels.cuda.matmul import matmul_acc, matmul_transposed


@cuda.jit
def _fill_rows(out, bias):
    o, i = cuda.grid(2)
    if i < out.shape[0] and o < out.shape[1]:
        out[i, o] = bias[o]


@cuda.jit
def _bias_backward(dbias, dout):
    # One thread per column: the rows are summed in ascending order, as on the CPU.
    o = cuda.grid(1)
    if o < dbias.size:
        acc = dbias[o]
        for i in range(dout.shape[0]):
            acc = fadd(acc, dout[i, o])
        dbias[o] = acc


def linear_forward(out, inp, weight, bias) -> None:
    """out (N,OC) = bias + inp (N,C) @ weight (C,OC), each output starting from its bias."""
    N, OC = out.shape
    _fill_rows[((OC + 15) // 16, (N + 15) // 16), (16, 16)](out, bias)
    matmul_acc(inp, weight, out)


def bias_backward(dbias, dout) -> None:
    """dbias += sum over rows of dout, rows in ascending order."""
    _bias_backward[blocks(dbias.size), THREADS](dbias, dout)


def linear_backward(dinp, dweight, dbias, dout, inp, weight) -> None:
    """dinp += dout W^T;  dweight += inp^T dout;  dbias += column sums of dout."""
    if dout.shape[0] and dout.shape[1]:
        matmul_transposed(dout, weight, dinp, False, True)
        matmul_transposed(inp, dout, dweight, True, False)
    bias_backward(dbias, dout)
