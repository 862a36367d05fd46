"""Backends by name, as a spawned compute worker is told which one to build."""
import numpy as np
import pytest
from numba import cuda

from kernels.backend import BackendUnavailable, backend_named


def test_the_cpu_backend_by_name_runs_its_ops():
    backend = backend_named("cpu")
    assert backend.name == "cpu"
    x = backend.zeros(4)
    backend.ops.residual_forward(x, np.ones(4, np.float32), np.full(4, 2.0, np.float32))
    assert backend.to_host(x).tolist() == [3.0] * 4


def test_an_unknown_backend_name_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        backend_named("gpu")


@pytest.mark.skipif(cuda.is_available(), reason="this machine has a GPU")
def test_the_cuda_backend_by_name_says_why_it_is_unavailable():
    with pytest.raises(BackendUnavailable, match="no usable CUDA GPU"):
        backend_named("cuda")


def test_a_numba_cuda_that_cannot_compile_is_refused_with_its_reason(monkeypatch):
    """Seen on a GPU machine whose numba-cuda used an attribute its numpy had dropped: the
    node started and then failed at every block. The backend now compiles a kernel first."""
    from kernels.cuda import arrays

    def broken_compile(shape):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'\nmore detail")

    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(arrays, "zeros", broken_compile)
    with pytest.raises(BackendUnavailable) as refused:
        backend_named("cuda")
    assert str(refused.value) == ("the CUDA kernels cannot compile or run here: AttributeError: "
                                  "module 'numpy' has no attribute 'row_stack'")
