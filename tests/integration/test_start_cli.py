"""`uponode start` refusals that happen before a node runs."""
import pytest
from numba import cuda

from tests.integration.cli_helpers import assert_one_line_error, uponode

pytestmark = pytest.mark.integration


@pytest.mark.skipif(cuda.is_available(), reason="this machine has a GPU")
def test_gpu_without_a_gpu_is_a_one_line_error(tmp_path):
    home = tmp_path / "home"
    assert uponode("init", "--home", str(home)).returncode == 0
    proc = uponode("start", "--home", str(home), "--gpu")
    assert_one_line_error(proc, "--gpu", "no usable CUDA GPU")
