"""Devnets whose validators all start at once finalize blocks.

Started together, every validator signs its first messages before its connections are
up; with three validators every vote is needed, so a node that sent each vote only once,
to the peers connected at that instant, stayed at height 0 for good.  The nodes re-gossip
the current height's proposal and votes to each peer on connect and every second."""
import json
import pathlib
import subprocess
import sys
import time

import pytest

from tests.integration.test_devnet import _free_base_port, _height, _wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEVNET = [sys.executable, str(ROOT / "scripts" / "devnet.py")]
HEIGHT = 3
BOUND_S = 120  # from every node answering its API; 7 processes share a 2-core machine


@pytest.mark.parametrize("validators", [3, 7])
def test_validators_started_together_finalize_blocks(tmp_path, validators):
    directory = tmp_path / "devnet"
    try:
        subprocess.run([*DEVNET, "up", "--validators", str(validators), "--dir", str(directory),
                        "--base-port", str(_free_base_port(validators)), "--no-mine"],
                       check=True, capture_output=True, timeout=180)
        urls = [n["url"] for n in json.loads((directory / "devnet.json").read_text())["nodes"]]
        started = time.monotonic()
        _wait(lambda: min(_height(u) for u in urls) >= HEIGHT, BOUND_S,
              f"height {HEIGHT} on all {validators} nodes")
        print(f"{validators} validators: height {HEIGHT} everywhere after "
              f"{time.monotonic() - started:.1f} s")
    finally:
        if (directory / "devnet.json").exists():
            subprocess.run([*DEVNET, "down", "--dir", str(directory)], capture_output=True,
                           timeout=60)
