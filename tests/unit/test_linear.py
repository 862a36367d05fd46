"""The bias gradient is each column's sum over the rows in ascending order, added to
what the gradient held: the kernel against that chain written plainly, column by
column, on shapes narrower and wider than a vector."""
import numpy as np
import pytest

from kernels.linear import bias_backward

F32 = np.float32


@pytest.mark.parametrize("rows, columns", [(1, 1), (5, 7), (512, 33), (64, 384)])
def test_bias_backward_is_one_chain_a_column(rows, columns):
    rng = np.random.default_rng(rows + columns)
    dout = (rng.standard_normal((rows, columns)) * rng.uniform(0.001, 1000, columns)).astype(F32)
    dbias = rng.standard_normal(columns).astype(F32)
    expected = dbias.copy()
    for o in range(columns):
        acc = expected[o]
        for i in range(rows):
            acc = F32(acc + dout[i, o])
        expected[o] = acc
    bias_backward(dbias, dout)
    assert np.array_equal(dbias.view(np.uint32), expected.view(np.uint32))
