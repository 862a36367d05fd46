"""C += A @ B on CUDA with kernels/matmul.py's contract: one thread per C[m, n] runs
acc = C[m, n]; acc = fma(A[m, k], B[k, n], acc) for k ascending; C[m, n] = acc.

No tiling along k, no tensor cores: the chain is the same whatever the grid.  The
transposed operands of the backward passes are read in place (flags ta, tb) instead
of being copied, which changes no value.
"""
from numba import cuda

from kernels.cuda.fp import fma

TILE = 16


@cuda.jit
def _matmul_acc(A, B, C, ta, tb):
    # x runs along n so that a warp reads consecutive B (and C) elements.
    n, m = cuda.grid(2)
    M, N = C.shape
    if m < M and n < N:
        K = A.shape[0] if ta else A.shape[1]
        acc = C[m, n]
        for k in range(K):
            a = A[k, m] if ta else A[m, k]
            b = B[n, k] if tb else B[k, n]
            acc = fma(a, b, acc)
        C[m, n] = acc


def matmul_transposed(A, B, C, ta: bool, tb: bool) -> None:
    """C += op(A) @ op(B), op being the transpose where ta / tb is set."""
    M, N = C.shape
    grid = ((N + TILE - 1) // TILE, (M + TILE - 1) // TILE)
    _matmul_acc[grid, (TILE, TILE)](A, B, C, ta, tb)


def matmul_acc(A, B, C) -> None:
    """C (M,N) += A (M,K) @ B (K,N); each C[m, n] is a sequential fma chain over k."""
    K = A.shape[1]
    if B.shape[0] != K or C.shape != (A.shape[0], B.shape[1]):
        raise ValueError(f"shape mismatch: A {A.shape}, B {B.shape}, C {C.shape}")
    if C.size == 0 or K == 0:
        return
    matmul_transposed(A, B, C, False, False)
