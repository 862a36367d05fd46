"""On a real NVIDIA GPU, every CUDA kernel gives the CPU kernel's bits at the devnet
model's shapes (and at the simulator's small shapes)."""
import warnings

import pytest
from numba import cuda

from node.types.genesis import load_genesis
from tests.gpu.cuda_checks import SMALL, Shapes, run_checks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU (numba.cuda.is_available() is false)"),
]


def _devnet_shapes() -> Shapes:
    genesis = load_genesis()
    m = genesis.model
    return Shapes(B=genesis.training.batch_size, T=m.context_length, C=m.n_embd,
                  n_head=m.n_head, V=m.vocab_size, norm_size=3 * 8192 + 17, n_params=100_003)


@pytest.mark.parametrize("shapes", [SMALL, None], ids=["small", "devnet"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_cuda_op_matches_the_cpu_bits(shapes, seed):
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
    result = run_checks(shapes or _devnet_shapes(), seed)
    assert len(result) >= 52
    assert {name: n for name, n in result.items() if n} == {}


@pytest.mark.parametrize("config,steps", [("devnet", 20), ("10m", 20)])
def test_full_training_steps_and_the_outer_step_match_the_cpu_bits(config, steps):
    import json
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "tests.gpu.train_check", str(steps), config],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    if config == "10m":
        assert result["params"] >= 10_000_000
    assert result["cuda"] == result["cpu"]
    assert result["outer_cuda"] == result["outer_cpu"]
