"""No process left behind (issue 14): a mining node stopped in the middle of a unit, by
SIGTERM, SIGINT or SIGKILL, takes its compute worker and every other child with it within
seconds.  Real `uponode start` processes; the process tree is read from /proc."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from genesis.builder import build_devnet
from node.storage.config import NodeConfig, render_config
from node.storage.home import init_home, read_key_file
from tests.integration.test_devnet import ROOT, _free_base_port, _wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GONE_WITHIN_S = 10
# a unit of minutes, so the node is surely stopped mid-unit on any machine, and a node
# that waited for the unit to end before exiting would fail
STEPS_PER_UNIT = 2000
CHECKPOINT_EVERY = 50

Process = tuple[int, str]  # a pid and its start time: a reused pid is another process


def _mining_home(directory: pathlib.Path) -> pathlib.Path:
    genesis_path = build_devnet(1, directory)
    raw = json.loads(genesis_path.read_text())
    raw["training"].update(steps_per_unit=STEPS_PER_UNIT, checkpoint_every=CHECKPOINT_EVERY)
    genesis_path.write_text(json.dumps(raw, indent=2) + "\n")
    home = directory / "node-0"
    home.mkdir()
    listen = f"127.0.0.1:{_free_base_port(1)}"
    (home / "config.toml").write_text(render_config(NodeConfig(listen=listen, mine=True)))
    init_home(home, genesis_path, key=read_key_file(directory / "keys" / "validator-0.json"))
    return home


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state field on (the command name may hold spaces)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _identity(pid: int) -> Process | None:
    stat = _stat(pid)
    return (pid, stat[19]) if stat else None  # field 22, the start time


def _alive(process: Process) -> bool:
    """A zombie is gone: it runs nothing and holds nothing but its pid."""
    stat = _stat(process[0])
    return stat is not None and stat[19] == process[1] and stat[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def _tree(pid: int) -> list[Process]:
    """pid and all its descendants."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        if (identity := _identity(parent)) is None:
            continue
        found.append(identity)
        for children in pathlib.Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                todo += [int(child) for child in children.read_text().split()]
            except OSError:
                pass
    return found


def _start_node(home: pathlib.Path) -> subprocess.Popen:
    with open(home / "node.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home)],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, NUMBA_NUM_THREADS="1"))


def _mid_unit(node: subprocess.Popen, home: pathlib.Path) -> bool:
    assert node.poll() is None, (home / "node.log").read_text(errors="replace")
    log_text = (home / "node.log").read_text(errors="replace")
    return f"training {STEPS_PER_UNIT} steps" in log_text and "trained in" not in log_text


@pytest.fixture
def mining_node(tmp_path):
    home = _mining_home(tmp_path)
    node = _start_node(home)
    started: list[Process] = []
    try:
        # on a fresh checkout the worker first compiles the kernels, inside the unit
        _wait(lambda: _mid_unit(node, home), 180, "the node to start training a unit")
        time.sleep(1)  # let the worker get into the unit's kernels
        started += _tree(node.pid)
        commands = [_cmdline(pid) for pid, _ in started]
        assert any("spawn_main" in c for c in commands), commands  # the compute worker
        assert _mid_unit(node, home)
        yield node, started
    finally:
        for process in [p for p in started if _alive(p)]:
            os.kill(process[0], signal.SIGKILL)
        node.kill()
        node.wait()


def _assert_all_gone(node: subprocess.Popen, started: list[Process]) -> None:
    deadline = time.monotonic() + GONE_WITHIN_S
    try:
        node.wait(timeout=GONE_WITHIN_S)  # reaped: the node is ours
    except subprocess.TimeoutExpired:
        pass
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [f"{pid}: {_cmdline(pid)}" for pid, start in started if _alive((pid, start))]
    assert not left, f"still running {GONE_WITHIN_S} s after the signal: {left}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_mining_node_stopped_mid_unit_leaves_no_process(mining_node, sig):
    node, started = mining_node
    node.send_signal(sig)
    _assert_all_gone(node, started)
