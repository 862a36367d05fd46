"""Two full training steps of a tiny config and the outer step give the CPU backend's bits
on the CUDA backend, run in numba's CUDA simulator (no GPU needed; slow, about 3 min)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_two_training_steps_and_the_outer_step_are_bit_identical_in_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.gpu.train_check", "2", "tiny"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert len(result["cpu"]) == 2
    assert result["cuda"] == result["cpu"]
    assert result["outer_cuda"] == result["outer_cpu"]
