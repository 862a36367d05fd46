"""scripts/bench_loss_parity.py, run as a user runs it on a tiny genesis: the last line's
shape and gaps, and the same losses whether its three runs go one after another or side by
side in three processes."""
import json
import pathlib
import subprocess
import sys

from tests.unit.conftest import tiny_genesis

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _parity(genesis: pathlib.Path, *flags: str) -> dict:
    run = subprocess.run([sys.executable, "scripts/bench_loss_parity.py", "--genesis", str(genesis),
                          "--rounds", "2", "--miners", "2", "--threads", "1", *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "chain: round 2/2" in run.stderr and "dp: round 2/2" in run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_side_by_side_gives_the_losses_of_one_process(tmp_path):
    genesis = tiny_genesis(tmp_path).directory / "genesis.json"
    alone, side_by_side = _parity(genesis), _parity(genesis, "--side-by-side")
    for result in (alone, side_by_side):
        assert result["rounds"] == 2 and result["threads"] == 1
        assert len(result["chain_by_round"]) == len(result["single_by_round"]) == len(result["dp_by_round"]) == 2
        assert result["chain_eval_loss"] == result["chain_by_round"][-1]
        # the gaps are taken before the losses are rounded to 4 places
        assert abs(result["gap_dp"] - (result["chain_eval_loss"] / result["dp_eval_loss"] - 1)) < 2e-4
        assert abs(result["gap_single"] - (result["chain_eval_loss"] / result["single_eval_loss"] - 1)) < 2e-4
    for key in ("chain_by_round", "single_by_round", "dp_by_round"):
        assert side_by_side[key] == alone[key]
    # the three runs are different training: the chain's outer step is not a baseline
    assert alone["chain_by_round"] != alone["dp_by_round"]
