"""A miner killed between its commitment and the round's challenge (issue 12, attack 8)
lost its checkpoints with its compute worker's memory: restarted, it re-trains the unit
it committed (training is bit-deterministic), answers the challenge, and its unit is
accepted and paid like any honest one."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from node.types.genesis import load_genesis
from node.uPoW.rounds import RoundSchedule
from tests.integration.test_devnet import ROOT, _get, _wait
from tests.integration.test_mining_devnet import mining_devnet  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _height(url: str) -> int:
    return (_get(url, "/status") or {}).get("height", -1)


def _kill_group(pid: int, sig: int) -> None:
    """Signal a node and its compute worker (each node leads its own session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _kill_between_commit_and_challenge(victim: dict, schedule: RoundSchedule) -> int:
    """SIGKILL the victim while its finalized height is its round's commit deadline: its
    unit is committed and the challenge not drawn yet.  A restart before the deadline would
    train the unit again in time to keep it; this is the case that lost it.  Returns the
    round."""
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        height = _height(victim["url"])
        round_ = schedule.round_of(height) if height > 0 else 0
        if height == schedule.commit_deadline(round_):
            units = (_get(victim["url"], f"/rounds/{round_}") or {}).get("units", [])
            if any(u["miner"] == victim["public_key"] for u in units):
                _kill_group(victim["pid"], signal.SIGKILL)
                return round_
        time.sleep(0.05)
    raise AssertionError("the victim was never caught at its commit deadline, committed")


def test_a_miner_killed_before_its_challenge_restarts_answers_and_is_paid(mining_devnet):  # noqa: F811
    state = json.loads((mining_devnet / "devnet.json").read_text())
    validators = [n for n in state["nodes"] if n["url"]]
    victim = validators[3]
    urls = [n["url"] for n in validators[:3]]
    schedule = RoundSchedule.from_genesis(load_genesis(mining_devnet / "genesis.json"))
    round_ = _kill_between_commit_and_challenge(victim, schedule)
    _wait(lambda: not pathlib.Path(f"/proc/{victim['pid']}").exists(), 30, "the victim to die")
    home = pathlib.Path(victim["home"])
    with open(home / "node.log", "ab") as log:
        restarted = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "--home", str(home)], cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, NUMBA_NUM_THREADS="1"), start_new_session=True)
    try:
        close = schedule.close_height(round_)
        _wait(lambda: min(_height(u) for u in urls) >= close, 300, f"round {round_} to close")
        view = _get(urls[0], f"/rounds/{round_}")
        unit = next(u for u in view["units"] if u["miner"] == victim["public_key"])
        assert unit["status"] == "accepted", unit
        assert (victim["public_key"], "units") in {(r["to"], r["reason"]) for r in view["rewards"]}
        log_text = (home / "node.log").read_text(errors="replace")
        assert f"round {round_} unit {unit['unit']}: checkpoints lost (restart?)" in log_text
        assert "re-training did not give the commitment" not in log_text
    finally:
        _kill_group(restarted.pid, signal.SIGTERM)
        try:
            restarted.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_group(restarted.pid, signal.SIGKILL)
            restarted.wait(timeout=30)
