"""`uponode start` refusals that happen before a node runs, and a stop while it waits."""
import signal
import socket
import subprocess
import sys

import pytest
from numba import cuda

from tests.integration.cli_helpers import assert_one_line_error, uponode

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(cuda.is_available(), reason="this machine has a GPU")
def test_gpu_without_a_gpu_is_a_one_line_error(tmp_path):
    home = tmp_path / "home"
    assert uponode("init", "--home", str(home)).returncode == 0
    proc = uponode("start", "--home", str(home), "--gpu")
    assert_one_line_error(proc, "--gpu", "no usable CUDA GPU")


def test_state_sync_without_a_peer_is_a_one_line_error(tmp_path):
    home = tmp_path / "home"
    assert uponode("init", "--home", str(home)).returncode == 0
    proc = uponode("start", "--home", str(home), "--state-sync")
    assert_one_line_error(proc, "--state-sync needs a peer")


def test_a_node_waiting_for_a_snapshot_stops_on_sigterm(tmp_path):
    """No peer answers: the node keeps asking, and a stop still stops it, its store whole."""
    home = tmp_path / "home"
    assert uponode("init", "--home", str(home)).returncode == 0
    nobody, listen = _free_port(), _free_port()
    process = subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home), "--state-sync",
                                "--peer", f"127.0.0.1:{nobody}", "--listen", f"127.0.0.1:{listen}", "--no-mine"],
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if "no snapshot to sync from yet" in line:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
