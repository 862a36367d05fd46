"""`uponode bench kernels --gpu --json` on a real NVIDIA GPU: every part of the
benchmark runs and reports.  Its figures are measured, never asserted."""
import json

import pytest
import torch
from numba import cuda

from node.uPoW.kernel_bench import model_matmul_shapes
from node.types.genesis import load_genesis
from tests.integration.cli_helpers import uponode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU (numba.cuda.is_available() is false)"),
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason=f"torch {torch.__version__} cannot use CUDA (torch.cuda.is_available() "
                              "is false), so there is no cuBLAS baseline"),
]


def test_the_gpu_benchmark_reports_every_part():
    proc = uponode("bench", "kernels", "--gpu", "--json", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(proc.stdout)  # the figures, for the log of a run with -rP (scripts/gpu_check.sh)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    header = records[0]
    assert header["bench"] == "machine"
    assert header["device"] == "cuda" and header["tf32"] is False

    matmuls = [r for r in records if r["bench"] == "matmul"]
    expected = [[m, k, n] for _, m, k, n in model_matmul_shapes(load_genesis())]
    assert [r["shape"] for r in matmuls] == expected
    for record in matmuls:
        assert record["device"] == "cuda"
        assert record["deterministic_gflops"] > 0 and record["cublas_gflops"] > 0

    steps = {r["config"]: r for r in records if r["bench"] == "train_step"}
    assert sorted(steps) == ["10m", "genesis"]
    assert steps["10m"]["params"] >= 10_000_000
    for record in steps.values():
        assert record["device"] == "cuda"
        assert record["deterministic_ms"] > 0 and record["torch_eager_ms"] > 0
    assert len(records) == 1 + len(matmuls) + len(steps)
