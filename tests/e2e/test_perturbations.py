"""Each shipped manifest, run for real: four `uponode` validators (and a light auditor
where the manifest says) on 127.0.0.1 behind link proxies, perturbed, and checked only
through their HTTP APIs.  Beyond the runner's invariants, each test checks that its
perturbation did what it is for."""
import asyncio
import pathlib

import pytest

from tests.e2e.manifest import load_manifest
from tests.e2e.run import run_manifest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MANIFESTS = pathlib.Path(__file__).parent / "manifests"


def _run(name: str, directory: pathlib.Path) -> dict:
    manifest = load_manifest(MANIFESTS / f"{name}.toml")
    result = asyncio.run(run_manifest(manifest, directory))
    assert not result.failures, "\n".join(f.line() for f in result.failures)
    assert len(result.summary["perturbations"]) == len(manifest.perturbations)
    assert result.summary["rounds_closed"] >= 1
    return result.summary


def test_a_paused_validator_does_not_stop_the_others(tmp_path):
    (pause,) = _run("pause", tmp_path / "run")["perturbations"]
    # three of four validators hold a quorum: blocks kept coming while node-2 was stopped
    assert pause["healed_height"] >= pause["fired_height"] + 3, pause


def test_a_two_two_partition_stalls_then_heals(tmp_path):
    summary = _run("partition", tmp_path / "run")
    (partition,) = summary["perturbations"]
    # neither half holds a quorum: at most a block already decided when it fired
    assert partition["healed_height"] <= partition["fired_height"] + 1, partition
    assert summary["txs_in_blocks"] > 0


def test_a_cut_proposer_is_replaced_by_a_round_change(tmp_path):
    (cut,) = _run("cut_proposer", tmp_path / "run")["perturbations"]
    # the cut node was the height's proposer: it was decided in a later round, by another
    assert cut["proposed"]["round"] >= 1, cut
    assert cut["proposed"]["proposer"] not in cut["nodes"], cut


def test_a_validator_restarted_at_a_round_close_recomputes_it(tmp_path):
    summary = _run("restart_at_close", tmp_path / "run")
    (restart,) = summary["perturbations"]
    assert summary["accepted_units"] > 0
    assert summary["round_closed_after_heal"]["close_height"] > restart["fired_height"]
    assert min(summary["heights"].values()) >= summary["round_closed_after_heal"]["close_height"]


def test_a_killed_and_a_disconnected_validator_catch_up(tmp_path):
    summary = _run("kill_disconnect", tmp_path / "run")
    kill, disconnect = summary["perturbations"]
    assert (kill["kind"], disconnect["kind"]) == ("kill", "disconnect")
    assert kill["healed_height"] >= kill["fired_height"] + 3, kill
