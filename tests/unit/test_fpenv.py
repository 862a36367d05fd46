"""kernels.fpenv detects a process that flushes subnormals (FTZ/DAZ)."""
import json
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernels.fpenv import (FloatingPointEnvironmentError, require_ieee_subnormals,
                           subnormals_flushed)

FTZ = 0x8000  # MXCSR bit 15: flush subnormal results to zero
DAZ = 0x0040  # MXCSR bit 6: treat subnormal inputs as zero

MXCSR_C = """
void set_mxcsr_bits(unsigned int bits) { __builtin_ia32_ldmxcsr(__builtin_ia32_stmxcsr() | bits); }
void clear_mxcsr_bits(unsigned int bits) { __builtin_ia32_ldmxcsr(__builtin_ia32_stmxcsr() & ~bits); }
"""

# Runs in a child so that this test process keeps IEEE subnormals.
CHILD = textwrap.dedent("""
    import ctypes, json, sys
    from kernels import fpenv
    lib = ctypes.CDLL(sys.argv[1])
    rows = []
    for bits in (0, FTZ, DAZ, FTZ | DAZ, 0):
        lib.set_mxcsr_bits(bits)
        a, b = fpenv._probe_inputs()
        row = {"bits": bits, "numpy": fpenv._flushed(a * b),
               "numba": fpenv._flushed(fpenv._numba_products(a, b)), "error": None}
        try:
            fpenv.require_ieee_subnormals()
        except fpenv.FloatingPointEnvironmentError as e:
            row["error"] = str(e)
        lib.clear_mxcsr_bits(FTZ | DAZ)
        rows.append(row)
    print(json.dumps(rows))
""").replace("FTZ", str(FTZ)).replace("DAZ", str(DAZ))


def test_clean_process_keeps_subnormals():
    assert not subnormals_flushed()
    require_ieee_subnormals()


def test_error_is_a_runtime_error():
    assert issubclass(FloatingPointEnvironmentError, RuntimeError)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="sets FTZ/DAZ through the x86-64 MXCSR register")
@pytest.mark.skipif(shutil.which("gcc") is None,
                    reason="needs gcc to build the MXCSR helper library")
def test_ftz_and_daz_are_refused(tmp_path: Path):
    src = tmp_path / "mxcsr.c"
    lib = tmp_path / "libmxcsr.so"
    src.write_text(MXCSR_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
    child = subprocess.run([sys.executable, "-c", CHILD, str(lib)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    rows = json.loads(child.stdout)
    assert [r["bits"] for r in rows] == [0, FTZ, DAZ, FTZ | DAZ, 0]
    for r in rows:
        flushed = r["bits"] != 0
        assert r["numpy"] == flushed and r["numba"] == flushed, r
        assert (r["error"] is not None) == flushed, r
        if flushed:
            assert "flushes subnormal floats to zero" in r["error"]
            assert "refusing to train" in r["error"]
