"""Peer exchange with real processes: a node started with one --peer on a devnet finds
the other validators from its peer's /status and connects to them; its address book is
kept in its home, so started again with no --peer at all it finds them again."""
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from tests.integration.cli_helpers import stop, uponode
from tests.integration.test_devnet import ROOT, _free_base_port, _get, _wait, running_devnet

pytestmark = pytest.mark.integration

VALIDATORS = 3


def _start(home: pathlib.Path, *flags: str) -> subprocess.Popen:
    with open(home / "node.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home), "--no-mine",
                                 *flags], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, NUMBA_NUM_THREADS="1"))


def _peer_addresses(url: str) -> set[str]:
    status = _get(url, "/status") or {}
    return {p["address"] for p in status.get("peers", [])}


def test_a_node_given_one_peer_finds_the_others_and_remembers_them(tmp_path):
    base = _free_base_port(VALIDATORS + 2)
    with running_devnet(tmp_path / "devnet", "--validators", str(VALIDATORS), "--no-mine", base_port=base) as devnet:
        newcomer: subprocess.Popen | None = None
        try:
            nodes = json.loads((devnet / "devnet.json").read_text())["nodes"]
            validators = {n["url"].removeprefix("http://") for n in nodes if n["url"]}
            home = tmp_path / "newcomer"
            assert uponode("init", "--home", str(home), "--genesis", str(devnet / "genesis.json"),
                           timeout=120).returncode == 0
            listen = f"127.0.0.1:{base + VALIDATORS + 1}"
            first = sorted(validators)[0]
            newcomer = _start(home, "--listen", listen, "--peer", first)
            url = f"http://{listen}"
            started = time.monotonic()
            _wait(lambda: len(_peer_addresses(url)) >= 2, 30, "a second peer within 30 s of starting")
            found_in = time.monotonic() - started
            _wait(lambda: _peer_addresses(url) == validators, 60, "every validator as a peer")
            log = (home / "node.log").read_text()
            assert "learned" in log and "a peer learned from peer exchange" in log

            def reached_in_book() -> bool:  # saved at the next exchange after the connections
                book = json.loads((home / "data" / "peers.json").read_text())
                return validators <= set(book) and all(book[a]["reached"] for a in validators)
            _wait(reached_in_book, 30, "the validators in the saved address book, as reached")
            print(f"second peer {found_in:.1f} s after start")

            # started again without any --peer: the book alone leads it back to all of them
            stop(newcomer)
            newcomer = _start(home, "--listen", listen)
            _wait(lambda: _peer_addresses(url) == validators, 60, "every validator again, from the saved book")
        finally:
            if newcomer is not None:
                stop(newcomer)
