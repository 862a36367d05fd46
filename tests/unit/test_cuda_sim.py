"""Every CUDA kernel gives the CPU kernel's bits on the numba CUDA simulator.

The simulator must be switched on before numba.cuda is first imported, so the checks
(tests/gpu/cuda_checks.py, small shapes) run in a subprocess with
NUMBA_ENABLE_CUDASIM=1 and report mismatching elements per output as JSON.  The
simulator runs the kernels' indexing and operation order; the rounding of each device
operation is pinned by test_cuda_ptx.py and checked on hardware by tests/gpu.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_cuda_op_matches_the_cpu_bits_in_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-m", "tests.gpu.cuda_checks"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    mismatches = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(mismatches) >= 52
    assert {name: n for name, n in mismatches.items() if n} == {}
