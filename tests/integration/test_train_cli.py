"""`uponode train` as a user runs it: a real process, its output and exit codes."""
import json
import os
import pathlib
import platform
import shutil
import subprocess

import pytest

from node.types.genesis import DEFAULT_GENESIS
from tests.integration.cli_helpers import assert_one_line_error, uponode
from tests.unit.test_training import GOLDEN_STATE_HASH_20

pytestmark = pytest.mark.integration


def _genesis_with(tmp_path: pathlib.Path, mutate) -> str:
    raw = json.loads(DEFAULT_GENESIS.read_text())
    raw["corpus"]["path"] = str(DEFAULT_GENESIS.parent / raw["corpus"]["path"])
    mutate(raw)
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_json_lines_end_with_the_golden_state_hash():
    proc = uponode("train", "--steps", "20", "--threads", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records[0]["event"] == "start"
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, 21))
    assert records[-1]["event"] == "done"
    assert records[-1]["state_hash"] == GOLDEN_STATE_HASH_20


def test_unknown_genesis_key(tmp_path):
    path = _genesis_with(tmp_path, lambda g: g["training"].update(lr=0.1))
    assert_one_line_error(uponode("train", "--genesis", path, "--steps", "1"), "training.lr: unknown key")


def test_corpus_hash_mismatch(tmp_path):
    path = _genesis_with(tmp_path, lambda g: g["corpus"].update(sha256="0" * 64))
    assert_one_line_error(uponode("train", "--genesis", path, "--steps", "1"), "corpus.sha256")


def test_negative_steps():
    assert_one_line_error(uponode("train", "--steps", "-3"), "--steps", "must be 0 or more")


def test_missing_genesis_file(tmp_path):
    assert_one_line_error(uponode("train", "--genesis", str(tmp_path / "none.json")), "cannot read")


# What a library built with -Ofast does when it is loaded: set FTZ and DAZ.
FTZ_LIBRARY_C = """
__attribute__((constructor)) static void set_ftz_daz(void) {
    __builtin_ia32_ldmxcsr(__builtin_ia32_stmxcsr() | 0x8040);
}
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="sets FTZ/DAZ through the x86-64 MXCSR")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the preloaded library")
def test_a_process_that_flushes_subnormals_refuses_to_train(tmp_path):
    source, library = tmp_path / "ftz.c", tmp_path / "libftz.so"
    source.write_text(FTZ_LIBRARY_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    proc = uponode("train", "--steps", "1", env={**os.environ, "LD_PRELOAD": str(library)})
    assert_one_line_error(proc, "flushes subnormal floats to zero", "refusing to train")


@pytest.mark.slow
def test_200_steps_bring_the_eval_loss_far_down(tmp_path):
    model = tmp_path / "model.safetensors"
    proc = uponode("train", "--steps", "200", "--json", "--export", str(model))
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    # a byte-level model starts near ln(256) = 5.55; 200 steps must learn the corpus's statistics
    assert done["eval_loss"] < done["eval_loss_initial"] - 2.0, done
    assert model.stat().st_size > 0


def test_gpu_without_a_gpu_is_a_one_line_error():
    from numba import cuda
    if cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert_one_line_error(uponode("train", "--gpu", "--steps", "1"), "--gpu", "no usable CUDA GPU")
