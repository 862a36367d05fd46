"""C += A @ B on CUDA with kernels/matmul.py's contract: for each C[m, n],
acc = C[m, n]; acc = fma(A[m, k], B[k, n], acc) for k ascending; C[m, n] = acc.

The usual shared-memory SGEMM structure with an exact order: a block of 16 x 16
threads owns a (16 TM) x (16 TN) tile of C, and each thread keeps TM x TN
accumulators in registers.  k advances in slabs of BK: the block stages the slab's
A and B tiles in shared memory, then every thread runs kk = 0 .. BK-1 over its
accumulators.  Each output's chain is still the single sequential fma chain over
ascending k; the last slab stops at K instead of padding with zeros (fma(0, b, -0.0)
is +0.0, and 0 * inf is NaN).  No split along k, no tensor cores.

A thread's outputs are strided by 16 rows and 16 columns, so a warp reads 16
consecutive B elements from shared memory (no bank conflict) and writes C rows
coalesced.  The transposed operands of the backward passes (flags ta, tb) are
staged from their stored layout, which changes no value.
"""
import functools

import numpy as np
from numba import cuda, float32

from kernels.cuda.fp import device, fma

SIDE = 16  # threads per block side
BK = 16    # k per shared-memory slab


@device
def _stage_slab(tile, X, k_major, k0, x0, K, extent, width, loads, tid):
    """tile[kk, i] = op(X)'s element (k0 + kk, x0 + i): X is stored (K, extent) where
    k_major, else (extent, K).  Consecutive threads read consecutive stored addresses."""
    for r in range(loads):
        e = tid + r * SIDE * SIDE
        if k_major:
            kk, i = e // width, e % width
            inside = k0 + kk < K and x0 + i < extent
            tile[kk, i] = X[k0 + kk, x0 + i] if inside else np.float32(0.0)
        else:
            i, kk = e // BK, e % BK
            inside = x0 + i < extent and k0 + kk < K
            tile[kk, i] = X[x0 + i, k0 + kk] if inside else np.float32(0.0)


def _tiled_matmul(TM: int, TN: int):
    """The kernel for thread tiles of TM x TN outputs (block tiles of 16 TM x 16 TN)."""
    BM, BN = SIDE * TM, SIDE * TN
    A_LOADS, B_LOADS = BM * BK // (SIDE * SIDE), BK * BN // (SIDE * SIDE)

    def matmul_tile(A, B, C, ta, tb):
        M, N = C.shape
        K = A.shape[0] if ta else A.shape[1]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * SIDE + tx
        m0, n0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
        a_tile = cuda.shared.array((BK, BM), float32)  # a_tile[kk, i] = op(A)[m0 + i, k0 + kk]
        b_tile = cuda.shared.array((BK, BN), float32)  # b_tile[kk, j] = op(B)[k0 + kk, n0 + j]
        acc = cuda.local.array((TM, TN), float32)
        a_reg = cuda.local.array(TM, float32)
        b_reg = cuda.local.array(TN, float32)
        for i in range(TM):
            for j in range(TN):
                m, n = m0 + ty + SIDE * i, n0 + tx + SIDE * j
                acc[i, j] = C[m, n] if m < M and n < N else np.float32(0.0)
        for k0 in range(0, K, BK):
            # Entries outside A or B are staged as zeros and never reach a stored output.
            _stage_slab(a_tile, A, ta, k0, m0, K, M, BM, A_LOADS, tid)
            _stage_slab(b_tile, B, not tb, k0, n0, K, N, BN, B_LOADS, tid)
            cuda.syncthreads()
            for kk in range(min(BK, K - k0)):
                for i in range(TM):
                    a_reg[i] = a_tile[kk, ty + SIDE * i]
                for j in range(TN):
                    b_reg[j] = b_tile[kk, tx + SIDE * j]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] = fma(a_reg[i], b_reg[j], acc[i, j])
            cuda.syncthreads()  # the slab is read by all before the next one overwrites it
        for i in range(TM):
            for j in range(TN):
                m, n = m0 + ty + SIDE * i, n0 + tx + SIDE * j
                if m < M and n < N:
                    C[m, n] = acc[i, j]

    return cuda.jit(matmul_tile)


# One kernel per thread tile, largest first.  A product takes the largest whose grid
# still fills the GPU's SMs: one of few tiles is bound by how many SMs it occupies.
_matmul_8x8 = _tiled_matmul(8, 8)
_matmul_4x4 = _tiled_matmul(4, 4)
_matmul_2x2 = _tiled_matmul(2, 2)
TILED = {8: _matmul_8x8, 4: _matmul_4x4, 2: _matmul_2x2}


def _grid(t: int, M: int, N: int) -> tuple[int, int]:
    side = SIDE * t
    return (N + side - 1) // side, (M + side - 1) // side


@functools.cache
def _multiprocessors() -> int:
    # numba's CUDA simulator models one device with no SM count
    return getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1)


def launch_tiled(t: int, A, B, C, ta: bool, tb: bool) -> None:
    """C += op(A) @ op(B) with the t x t thread-tile kernel: every t gives the same bits."""
    M, N = C.shape
    TILED[t][_grid(t, M, N), (SIDE, SIDE)](A, B, C, ta, tb)


def matmul_transposed(A, B, C, ta: bool, tb: bool) -> None:
    """C += op(A) @ op(B), op being the transpose where ta / tb is set."""
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    if C.size == 0 or K == 0:
        return
    for t in TILED:
        columns, rows = _grid(t, M, N)
        if columns * rows >= _multiprocessors():
            break
    launch_tiled(t, A, B, C, ta, tb)


def matmul_acc(A, B, C) -> None:
    """C (M,N) += A (M,K) @ B (K,N); each C[m, n] is a sequential fma chain over k."""
    K = A.shape[1]
    if B.shape[0] != K or C.shape != (A.shape[0], B.shape[1]):
        raise ValueError(f"shape mismatch: A {A.shape}, B {B.shape}, C {C.shape}")
    matmul_transposed(A, B, C, False, False)
