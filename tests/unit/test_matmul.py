"""kernels.matmul: the tiled, vectorized, threaded matmul_acc gives exactly the
bits of the plain sequential-FMA reference, for any shape and thread count."""
import hashlib
import os
import pathlib
import subprocess
import sys

import numba
import numpy as np
import pytest
from llvmlite.binding import get_host_cpu_features
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import prange

from kernels.fp import fma, kernel
from kernels.matmul import KC, MR, NR, matmul_acc

ROOT = pathlib.Path(__file__).resolve().parents[2]
THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})

EDGE_SHAPES = [  # (M, K, N)
    (1, 1, 1), (7, 13, 5), (33, 65, 17), (MR, 3, NR), (MR - 1, 9, NR + 1),
    (MR + 1, 1, 2 * NR - 1), (2, 40, 8), (64, 64, 64),
]
MODEL_SHAPES = [
    (512, 128, 384), (512, 128, 128), (512, 128, 512), (512, 512, 128), (512, 128, 256),
    (128, 512, 384), (512, 384, 128), (512, 256, 128), (1024, 256, 768),
]


def hard_inputs(rng: np.random.Generator, M: int, K: int, N: int):
    """Full 24-bit mantissas over a wide exponent range, mixed signs (cancellation)
    and some subnormal products, so any change of order or rounding shows."""
    def draw(shape, lo, hi):
        x = rng.uniform(1.0, 2.0, shape) * np.exp2(rng.integers(lo, hi, shape))
        x *= rng.choice([-1.0, 1.0], shape)
        return x.astype(np.float32)
    A, B, C = draw((M, K), -8, 8), draw((K, N), -8, 8), draw((M, N), -4, 4)
    A[rng.random((M, K)) < 0.05] *= np.float32(2.0 ** -70)   # products near 2^-130: subnormal
    B[rng.random((K, N)) < 0.05] *= np.float32(2.0 ** -60)
    return A, B, C


def bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint32)


@kernel(parallel=True)
def matmul_acc_reference(A, B, C):
    """The contract written out plainly: C[m, n] = fma(A[m, k], B[k, n], C[m, n]) for
    ascending k."""
    M, K = A.shape
    N = B.shape[1]
    for m in prange(M):
        for k in range(K):
            a = A[m, k]
            for n in range(N):
                C[m, n] = fma(a, B[k, n], C[m, n])


def reference(A, B, C) -> np.ndarray:
    out = C.copy()
    matmul_acc_reference(A, B, out)
    return out


def fast(A, B, C, threads: int) -> np.ndarray:
    out = C.copy()
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        matmul_acc(A, B, out)
    finally:
        numba.set_num_threads(previous)
    return out


def assert_same_bits(A, B, C) -> None:
    expected = reference(A, B, C)
    for threads in THREADS:
        got = fast(A, B, C, threads)
        mismatch = np.flatnonzero(bits(got) != bits(expected))
        assert mismatch.size == 0, (
            f"{A.shape}x{B.shape}, {threads} threads: {mismatch.size} elements differ, "
            f"first at {np.unravel_index(mismatch[0], C.shape)}")


@pytest.mark.parametrize("M,K,N", EDGE_SHAPES + MODEL_SHAPES)
def test_bits_equal_reference(M, K, N):
    assert_same_bits(*hard_inputs(np.random.default_rng([M, K, N]), M, K, N))


def test_bits_equal_reference_over_several_k_blocks():
    assert_same_bits(*hard_inputs(np.random.default_rng(5), 13, 2 * KC + 77, 40))


@pytest.mark.parametrize("M,K,N", [(MR + 1, 9, NR + 1), (512, 128, 384), (128, 512, 384), (33, 2 * KC + 5, 17)])
def test_transposed_views_give_the_same_bits_without_a_copy(M, K, N):
    """A and B read in place as x.T of a C-contiguous x: what linear_backward passes."""
    A, B, C = hard_inputs(np.random.default_rng([M, K, N, 1]), M, K, N)
    a_t, b_t = A.T.copy(), B.T.copy()
    expected = reference(A, B, C)
    for a, b in ((a_t.T, B), (A, b_t.T), (a_t.T, b_t.T)):
        for threads in THREADS:
            got = fast(a, b, C, threads)
            assert np.array_equal(bits(got), bits(expected)), (a.flags.f_contiguous, b.flags.f_contiguous, threads)


def test_inputs_expose_order_and_fusion():
    """The hard inputs would catch a kernel that reorders k or splits the fma."""
    A, B, C = hard_inputs(np.random.default_rng(1), 33, 65, 17)
    expected = reference(A, B, C)
    reversed_k = reference(A[:, ::-1].copy(), B[::-1].copy(), C)
    unfused = C.copy()
    for k in range(A.shape[1]):
        unfused += A[:, k:k + 1] * B[k]
    assert (bits(reversed_k) != bits(expected)).mean() > 0.25
    assert (bits(unfused) != bits(expected)).mean() > 0.25


def test_close_to_float64():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((96, 300), dtype=np.float32)
    B = rng.standard_normal((300, 70), dtype=np.float32)
    C = rng.standard_normal((96, 70), dtype=np.float32)
    exact = C.astype(np.float64) + A.astype(np.float64) @ B.astype(np.float64)
    scale = np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64) + np.abs(C)
    got = fast(A, B, C, THREADS[-1])
    assert np.all(np.abs(got - exact) <= 300 * 2.0 ** -24 * scale)


def test_zero_sized_operands_leave_c_alone():
    C = np.ones((3, 4), np.float32)
    matmul_acc(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32), C)
    assert np.all(C == 1.0)
    matmul_acc(np.ones((0, 5), np.float32), np.ones((5, 4), np.float32), np.ones((0, 4), np.float32))


@pytest.mark.parametrize("A,B,C", [
    (np.ones((2, 3), np.float64), np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)),
    (np.ones((2, 6), np.float32)[:, ::2], np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)),
    (np.ones((2, 3), np.float32), np.ones((3, 8), np.float32)[:, ::2], np.ones((2, 4), np.float32)),
    (np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.ones((4, 2), np.float32).T),
    (np.ones((2, 3), np.float32), np.ones((4, 4), np.float32), np.ones((2, 4), np.float32)),
    (np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.ones((2, 5), np.float32)),
])
def test_rejects_bad_arguments(A, B, C):
    with pytest.raises(ValueError):
        matmul_acc(A, B, C)


def test_rejects_c_overlapping_an_input():
    X = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError):
        matmul_acc(X, np.ones((4, 4), np.float32), X)


@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 40), K=st.integers(1, 40), N=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_bits_equal_reference_random_shapes(M, K, N, seed):
    assert_same_bits(*hard_inputs(np.random.default_rng(seed), M, K, N))


@pytest.mark.skipif(MR == 6, reason="numba's target has no AVX-512: the 8-lane path above is the only one here")
def test_the_8_lane_path_gives_the_16_lane_path_s_bits():
    """Where the host has AVX-512 the tests above check the 16-lane tiles; a process whose
    numba target lacks it (NUMBA_CPU_FEATURES, numba's own setting) runs the 8-lane
    tiles, which must give the same bits."""
    features = ",".join(f for f in get_host_cpu_features().flatten().split(",") if not f.startswith("+avx512"))
    shapes = [(MR + 1, 9, 2 * NR + 3), (512, 128, 384), (128, 512, 384)]
    script = (
        "import hashlib, numpy as np\n"
        "from kernels.matmul import LANES, matmul_acc\n"
        "from tests.unit.test_matmul import hard_inputs\n"
        f"for M, K, N in {shapes!r}:\n"
        "    A, B, C = hard_inputs(np.random.default_rng([M, K, N]), M, K, N)\n"
        "    matmul_acc(A, B.T.copy().T, C)\n"
        "    print(LANES, hashlib.sha256(C.tobytes()).hexdigest())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env=dict(os.environ, NUMBA_CPU_FEATURES=features), check=True).stdout.split("\n")
    for (M, K, N), line in zip(shapes, out):
        expected = reference(*hard_inputs(np.random.default_rng([M, K, N]), M, K, N))
        assert line == f"8 {hashlib.sha256(expected.tobytes()).hexdigest()}", (M, K, N)
