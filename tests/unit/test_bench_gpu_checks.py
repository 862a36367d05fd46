"""The checks `uponode bench kernels --gpu` makes before it benchmarks anything.

The CUDA kernels' own check (kernels.backend.cuda_backend, as node.uPoW.backends calls it) is stubbed where it must
pass; torch is the real build installed here."""
import pytest
import torch

import node.uPoW.backends as backends
import node.uPoW.kernel_bench as bench
from kernels.backend import BackendUnavailable
from node.types.errors import CommandError


def test_no_gpu_for_the_kernels_names_gpu_and_the_reason(monkeypatch):
    def unavailable():
        raise BackendUnavailable("no usable CUDA GPU (numba.cuda.is_available() is false)")

    monkeypatch.setattr(backends, "cuda_backend", unavailable)
    with pytest.raises(CommandError, match=r"^--gpu: no usable CUDA GPU \(numba"):
        bench.gpu_backend()


@pytest.mark.skipif(torch.version.cuda is not None, reason="the installed torch has CUDA support")
def test_a_torch_build_without_cuda_names_torch_and_its_version(monkeypatch):
    monkeypatch.setattr(backends, "cuda_backend", lambda: object())
    with pytest.raises(CommandError) as raised:
        bench.gpu_backend()
    message = str(raised.value)
    assert message.startswith("--gpu: ")
    assert f"torch {torch.__version__}" in message
    assert "without CUDA support" in message and "cuBLAS baseline" in message
    assert "\n" not in message


def test_the_kernels_are_checked_before_torch(monkeypatch):
    def unavailable():
        raise BackendUnavailable("no usable CUDA GPU")

    monkeypatch.setattr(backends, "cuda_backend", unavailable)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: pytest.fail("torch asked first"))
    with pytest.raises(CommandError, match="no usable CUDA GPU"):
        bench.gpu_backend()
