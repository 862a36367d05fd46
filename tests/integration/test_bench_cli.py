"""`uponode bench kernels` as a user runs it: the errors of --gpu where it cannot run."""
import os

import pytest

from tests.integration.cli_helpers import assert_one_line_error, uponode

pytestmark = pytest.mark.integration


def test_gpu_without_a_gpu_is_a_one_line_error():
    from numba import cuda
    if cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert_one_line_error(uponode("bench", "kernels", "--gpu"), "--gpu", "no usable CUDA GPU")


def test_gpu_with_threads_is_a_one_line_error():
    assert_one_line_error(uponode("bench", "kernels", "--gpu", "--threads", "2"),
                          "--threads", "--gpu")


def test_gpu_with_a_torch_build_without_cuda_is_a_one_line_error():
    # numba's CUDA simulator answers as a usable GPU, so the torch check is the one that fails
    import torch
    if torch.version.cuda is not None:
        pytest.skip("the installed torch has CUDA support")
    proc = uponode("bench", "kernels", "--gpu", env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert_one_line_error(proc, "--gpu", f"torch {torch.__version__}", "without CUDA support")
