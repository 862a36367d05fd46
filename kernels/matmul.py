"""Deterministic float32 matrix multiply-accumulate: C += A @ B.

Arithmetic contract (reproduced bit for bit by the CUDA kernel): for every
output element, ``acc = C[m, n]``, then ``acc = fma(A[m, k], B[k, n], acc)``
for k = 0 .. K-1 in ascending order, then ``C[m, n] = acc``. Nothing else
touches the element, so tiling, vector width and thread count cannot change
the bits; work is split only across output elements, never along k.

The fast path is the usual BLAS structure with an exact order: B is packed
into NR-column panels, and a micro-kernel (LLVM vector IR emitted by a numba
intrinsic) keeps an MR x NR tile of C in vector registers for a whole block
of k: per k it loads one row of the B panel, broadcasts each of the tile's
MR elements of A, and issues one lane-wise ``llvm.fma`` per vector of LANES
accumulators (each lane is the scalar fma of the contract). Splitting k into
blocks only stores the accumulators to C and reloads them, which continues
the same chain. Each thread takes one contiguous run of row tiles.

The vectors are as wide as numba's target allows: 16 lanes where it has
AVX-512 (24 of its 32 zmm registers accumulate), else 8 (12 of AVX2's 16 ymm).
The width only changes how many chains run side by side, never a chain.
"""
import numpy as np
from llvmlite import ir
from llvmlite.binding import get_host_cpu_features
from numba import config, get_num_threads, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.fp import kernel


def _target_has_avx512() -> bool:
    """Whether numba compiles for AVX-512 (its NUMBA_CPU_FEATURES, else the host's)."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


LANES = 16 if _target_has_avx512() else 8  # float32 lanes per vector register
MR = 12 if LANES == 16 else 6  # C rows per register tile
NV = 2          # vectors per register tile row
NR = LANES * NV  # C columns per register tile
KC = 1024       # most k per block: the tile's A rows (MR x KC floats, 24-48 KiB) stay in L1/L2

_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)
_I32 = ir.IntType(32)


@intrinsic
def _tile_fma(typingctx, a, a0, lda, ldk, bp, b0, c, c0, ldc, kc):
    """MR x NR tile of C += A rows @ packed B panel, for kc steps of k.

    Element (i, j) of the tile is c[c0 + i*ldc + j]; its chain runs over
    a[a0 + i*lda + k*ldk] and bp[b0 + k*NR + j] for k = 0 .. kc-1 in order.
    Arrays are addressed as flat float32 buffers.
    """
    if not all(isinstance(t, types.Array) and t.dtype == types.float32 for t in (a, bp, c)):
        return None
    sig = types.void(a, a0, lda, ldk, bp, b0, c, c0, ldc, kc)

    def codegen(context, builder, signature, args):
        a_ptr, b_ptr, c_ptr = (context.make_array(signature.args[i])(context, builder, args[i]).data
                               for i in (0, 4, 6))
        a0, lda, ldk, b0, c0, ldc, kc = (
            context.cast(builder, args[i], signature.args[i], types.intp)
            for i in (1, 2, 3, 5, 7, 8, 9))
        intp = a0.type

        def const(v):
            return ir.Constant(intp, v)

        def vec_at(base, offset):
            return builder.bitcast(builder.gep(base, [offset]), _VEC.as_pointer())

        vfma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]), f"llvm.fma.v{LANES}f32")
        a_rows = [builder.add(a0, builder.mul(lda, const(i))) for i in range(MR)]
        c_vecs = [[builder.add(c0, builder.add(builder.mul(ldc, const(i)), const(LANES * j)))
                   for j in range(NV)] for i in range(MR)]
        # Accumulators live in allocas indexed by constants; SROA turns them into registers.
        acc = [[cgutils.alloca_once(builder, _VEC) for _ in range(NV)] for _ in range(MR)]
        for i in range(MR):
            for j in range(NV):
                builder.store(builder.load(vec_at(c_ptr, c_vecs[i][j]), align=4), acc[i][j])

        splat = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
        undef = ir.Constant(_VEC, ir.Undefined)
        with cgutils.for_range(builder, kc) as loop:
            k = loop.index
            b_k = builder.add(b0, builder.mul(k, const(NR)))
            b = [builder.load(vec_at(b_ptr, builder.add(b_k, const(LANES * j))), align=4)
                 for j in range(NV)]
            a_k = builder.mul(k, ldk)
            for i in range(MR):
                a_ik = builder.load(builder.gep(a_ptr, [builder.add(a_rows[i], a_k)]))
                a_vec = builder.shuffle_vector(
                    builder.insert_element(undef, a_ik, ir.Constant(_I32, 0)), undef, splat)
                for j in range(NV):
                    builder.store(builder.call(vfma, [a_vec, b[j], builder.load(acc[i][j])]),
                                  acc[i][j])

        for i in range(MR):
            for j in range(NV):
                builder.store(builder.load(acc[i][j]), vec_at(c_ptr, c_vecs[i][j]), align=4)
        return context.get_dummy_value()

    return sig, codegen


@kernel(inline="always")
def _pack_row(B, bp, k):
    """bp[p, k, j] = B[k, p*NR + j] for every panel p, zero past the last column of B."""
    N = B.shape[1]
    n_full = N // NR
    for p in range(n_full):
        for j in range(NR):   # constant trip count: NV vector moves
            bp[p, k, j] = B[k, p * NR + j]
    for p in range(n_full, bp.shape[0]):
        for j in range(NR):
            n = p * NR + j
            bp[p, k, j] = B[k, n] if n < N else np.float32(0.0)


@kernel(parallel=True)
def _pack_b(B, bp):
    """B as NR-column panels (bp of shape (panels, K, NR)), rows packed in parallel.

    Panels make the micro-kernel's B stream contiguous whatever N is (a
    power-of-two row stride would otherwise alias in L1/L2). B is read row
    by row, the order that streams from memory.
    """
    for k in prange(B.shape[0]):
        _pack_row(B, bp, k)


@kernel()
def pack_panels(B, bp):
    """_pack_b on one thread, for callers that are themselves one task of a parallel loop."""
    for k in range(B.shape[0]):
        _pack_row(B, bp, k)


@kernel()
def _pack_a_edge(A, m0, k0, k1, ap):
    """ap[k - k0, i] = A[m0 + i, k], zero past the last row of A."""
    rows = min(MR, A.shape[0] - m0)
    for k in range(k0, k1):
        for i in range(MR):
            ap[k - k0, i] = A[m0 + i, k] if i < rows else np.float32(0.0)


@kernel()
def _copy_block(src, si, sj, dst, di, dj, rows, cols):
    """dst[di:di+rows, dj:dj+cols] = src[si:si+rows, sj:sj+cols].

    Element loops, not slice assignment: numba's slice shape-error message
    formats ints through float64 log10, which the kernel IR test forbids.
    """
    for i in range(rows):
        for j in range(cols):
            dst[di + i, dj + j] = src[si + i, sj + j]


@kernel()
def tile_row_acc(A, lda, ldk, bp, C, m0, k0, k1, n_panels, ap, c_pad):
    """C[m0:m0+MR, :n_panels*NR] += A[m0:m0+MR, k0:k1] @ B[k0:k1, :n_panels*NR]:
    one row tile (fewer rows at C's end), each element's chain continued over
    k = k0 .. k1-1 in order. B is packed panels (pack_panels); A[m, k] is at A's
    flat buffer's m*lda + k*ldk (A itself or a transposed view). ap (>= k1-k0
    rows of MR) and c_pad (MR x NR) are scratch.

    Full tiles read A and C in place. A tile that sticks out of C (last rows
    or columns) runs on a zero-padded copy of its A rows and C tile, so there
    is a single micro-kernel; padding lanes compute values never written back.
    """
    M, N = C.shape
    K = bp.shape[1]
    rows = min(MR, M - m0)
    if rows < MR:
        _pack_a_edge(A, m0, k0, k1, ap)
    for p in range(n_panels):
        n0 = p * NR
        cols = min(NR, N - n0)
        b0 = (p * K + k0) * NR
        if rows == MR and cols == NR:
            _tile_fma(A, m0 * lda + k0 * ldk, lda, ldk, bp, b0, C, m0 * N + n0, N, k1 - k0)
        else:
            _copy_block(C, m0, n0, c_pad, 0, 0, rows, cols)
            if rows == MR:
                _tile_fma(A, m0 * lda + k0 * ldk, lda, ldk, bp, b0, c_pad, 0, NR, k1 - k0)
            else:
                _tile_fma(ap, 0, 1, MR, bp, b0, c_pad, 0, NR, k1 - k0)
            _copy_block(c_pad, 0, 0, C, m0, n0, rows, cols)


@kernel()
def _update_rows(A, lda, ldk, bp, C, m_start, m_end, kc):
    """C[m_start:m_end, :] += A[m_start:m_end, :] @ B, k in blocks of kc (outermost,
    so a block of the B panels stays in cache across the row tiles)."""
    K = A.shape[1]
    ap = np.empty((kc, MR), dtype=np.float32)
    c_pad = np.empty((MR, NR), dtype=np.float32)
    for k0 in range(0, K, kc):
        k1 = min(k0 + kc, K)
        for m0 in range(m_start, m_end, MR):
            tile_row_acc(A, lda, ldk, bp, C, m0, k0, k1, bp.shape[0], ap, c_pad)


@kernel(parallel=True)
def _matmul_acc(A, B, C, kc, n_threads):
    M, K = A.shape
    N = B.shape[1]
    bp = np.empty(((N + NR - 1) // NR, K, NR), dtype=np.float32)
    _pack_b(B, bp)
    lda, ldk = A.strides[0] // 4, A.strides[1] // 4
    # One contiguous run of row tiles per thread: two parallel regions per
    # call, and each thread's A rows and C rows are its own.
    n_tiles = (M + MR - 1) // MR
    n_runs = min(n_threads, n_tiles)
    for r in prange(n_runs):
        m_start = r * n_tiles // n_runs * MR
        m_end = min((r + 1) * n_tiles // n_runs * MR, M)
        _update_rows(A, lda, ldk, bp, C, m_start, m_end, kc)


def _check(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> None:
    for x in (A, B, C):
        if x.dtype != np.float32 or x.ndim != 2:
            raise ValueError("matmul_acc needs 2-D float32 arrays")
    if not C.flags.c_contiguous or not all(x.flags.c_contiguous or x.flags.f_contiguous for x in (A, B)):
        raise ValueError("matmul_acc needs a C-contiguous C, and A and B each C-contiguous or the "
                         "transpose of a C-contiguous array")
    M, K = A.shape
    if B.shape[0] != K or C.shape != (M, B.shape[1]):
        raise ValueError(f"shape mismatch: A {A.shape}, B {B.shape}, C {C.shape}")
    if not C.flags.writeable:
        raise ValueError("C must be writeable")
    # An input that overlaps C would be read after C's update in some order.
    if np.may_share_memory(C, A) or np.may_share_memory(C, B):
        raise ValueError("C must not overlap A or B")


def matmul_acc(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> None:
    """C += A @ B in place; each C[m, n] is a sequential fma chain over ascending k.
    A and B may be transposed views (x.T of a C-contiguous x): the packing and the
    micro-kernel read them where they lie, so no transposed copy is made."""
    _check(A, B, C)
    K = A.shape[1]
    if C.size == 0 or K == 0:
        return
    n_blocks = -(-K // KC)
    _matmul_acc(A, B, C, -(-K // n_blocks), get_num_threads())
