"""Cross-entropy's forward, which runs rows' max and sum chains side by side, gives the
bits of its per-row contract written here plainly: one row at a time, the max and the
exponentials' sum each an in-order chain over the vocabulary, on row counts that leave a
group of rows part-full and on vocabularies of one and of many."""
import numba
import numpy as np
import pytest

from kernels.crossentropy import ROWS_SIDE_BY_SIDE, crossentropy_forward
from kernels.mathfn import exp_f32, log_f32

F32 = np.float32
R = ROWS_SIDE_BY_SIDE


@numba.njit(error_model="numpy")
def _reference_forward(losses, probs, logits, targets):
    N, V = logits.shape
    for i in range(N):
        maxval = F32(-np.inf)
        for v in range(V):
            maxval = max(maxval, logits[i, v])
        expsum = F32(0.0)
        for v in range(V):
            probs[i, v] = exp_f32(logits[i, v] - maxval)
            expsum += probs[i, v]
        for v in range(V):
            probs[i, v] = probs[i, v] * (F32(1.0) / expsum)
        losses[i] = log_f32(expsum) - (logits[i, targets[i]] - maxval)


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint32)


@pytest.mark.parametrize("rows", [1, R - 1, R, R + 1, 3 * R + 2])
@pytest.mark.parametrize("vocab", [1, 7, 256])
def test_rows_side_by_side_give_the_bits_of_one_row_at_a_time(rows, vocab):
    rng = np.random.default_rng(rows * 1000 + vocab)
    # rows of different scales, so that every row's chains differ
    logits = (rng.standard_normal((rows, vocab)) * rng.uniform(0.1, 30, (rows, 1))).astype(F32)
    targets = rng.integers(0, vocab, rows).astype(np.int32)
    got = np.full(rows, F32(7.0)), np.full((rows, vocab), F32(7.0))
    want = np.empty(rows, F32), np.empty((rows, vocab), F32)
    crossentropy_forward(got[0], got[1], logits, targets)
    _reference_forward(want[0], want[1], logits, targets)
    assert np.array_equal(_bits(got[0]), _bits(want[0]))
    assert np.array_equal(_bits(got[1]), _bits(want[1]))


def test_a_row_with_an_infinity_leaves_the_rows_beside_it_alone():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((R, 16)).astype(F32)
    logits[1, 3] = np.inf
    targets = np.zeros(R, np.int32)
    losses, probs = np.empty(R, F32), np.empty((R, 16), F32)
    crossentropy_forward(losses, probs, logits, targets)
    assert np.isnan(probs[1]).any()
    others = [0, 2, 3]
    assert np.isfinite(probs[others]).all() and np.isfinite(losses[others]).all()
