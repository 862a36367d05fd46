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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_every_cuda_op_matches_the_cpu_bits_in_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-m", "tests.gpu.cuda_checks"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    mismatches = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(mismatches) >= 52
    assert {name: n for name, n in mismatches.items() if n} == {}


def test_the_op_checks_count_every_bit_but_a_nan_s_payload():
    """A NaN the hardware makes has its maker's default bits (x86 0xFFC00000, NVIDIA
    0x7FFFFFFF); a signed zero, an ulp or a NaN against a number still counts."""
    # imported here, not at collection: it loads numba.cuda, which the other test of
    # this module keeps to its simulator subprocess
    from tests.gpu.cuda_checks import _mismatches

    def f32(bits: list[int]) -> np.ndarray:
        return np.array(bits, np.uint32).view(np.float32)

    cpu = f32([0xFFC00000, 0x80000000, 0x3F800000, 0x7FC00000, 0x3F800000])
    gpu = f32([0x7FFFFFFF, 0x00000000, 0x3F800001, 0x3F800000, 0x3F800000])
    assert _mismatches(cpu, gpu) == 3  # -0 against +0, one ulp, a NaN against 1.0
