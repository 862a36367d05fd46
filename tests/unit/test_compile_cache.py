"""numba's cache checks only the timestamp of the file that defines a kernel: a kernel
whose inlined helper changed (an upgrade in place) must be compiled again, not loaded
with the old helper's bits."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from kernels.compile_cache import source_digest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GELU_BITS = ("import numpy as np; from kernels.gelu import gelu_forward; "
             "x = np.linspace(-3, 3, 64, dtype=np.float32); out = np.empty_like(x); "
             "gelu_forward(out, x); print(out.tobytes().hex())")


def _gelu_bits(tree: pathlib.Path) -> str:
    """GELU's output bits in a fresh process that imports the kernels under tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, "-c", GELU_BITS], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.slow
def test_a_kernel_is_compiled_again_when_a_helper_it_inlines_changes(tmp_path):
    shutil.copytree(ROOT / "kernels", tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    before = _gelu_bits(tmp_path)
    assert list((tmp_path / "kernels" / "__pycache__").glob("kernels-*/**/gelu.gelu_forward-*.nbi"))
    assert _gelu_bits(tmp_path) == before  # from the cache
    mathfn = tmp_path / "kernels" / "mathfn.py"
    source = mathfn.read_text()
    assert "_TWO = np.float32(2.0)" in source
    mathfn.write_text(source.replace("_TWO = np.float32(2.0)", "_TWO = np.float32(2.5)"))  # tanh's
    assert _gelu_bits(tmp_path) != before  # gelu.py is unchanged; its tanh is not


def test_the_digest_names_every_source_file_by_path_and_bytes(tmp_path):
    (tmp_path / "cuda").mkdir()
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "cuda" / "b.py").write_text("B = 2\n")
    first = source_digest(tmp_path)
    assert source_digest(tmp_path) == first and len(first) == 16
    (tmp_path / "cuda" / "b.py").write_text("B = 3\n")
    changed = source_digest(tmp_path)
    assert changed != first
    (tmp_path / "cuda" / "b.py").rename(tmp_path / "cuda" / "c.py")
    assert source_digest(tmp_path) not in (first, changed)
