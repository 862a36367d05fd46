"""State sync with real processes: a validator whose home was wiped comes back with
`uponode start --state-sync`, takes a snapshot from a peer instead of replaying the
chain, then validates (its precommits finalize blocks) and mines (its units land in a
round).  A validator kept down past the retention window replaces its store from a
snapshot when it comes back.  A peer that serves a tampered snapshot is refused with a
line naming the chunk, and the sync completes from an honest one."""
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest
from aiohttp import web

from node.state.snapshot import Chunk, Entry, SnapshotManifest, combined_root
from node.state.state_tree import StateTree
from node.storage.home import init_home
from node.types.crypto import sha256
from tests.integration.cli_helpers import stop
from tests.integration.test_devnet import DEVNET, ROOT, _free_base_port, _get, _height, _wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _up(directory: pathlib.Path, *flags: str) -> dict:
    subprocess.run([*DEVNET, "up", "--validators", "4", "--dir", str(directory),
                    "--base-port", str(_free_base_port(5)), *flags], check=True, capture_output=True, timeout=600)
    return json.loads((directory / "devnet.json").read_text())


def _down(directory: pathlib.Path) -> None:
    subprocess.run([*DEVNET, "down", "--dir", str(directory)], capture_output=True, timeout=60)


def _wipe_and_restart(node: dict, *flags: str) -> subprocess.Popen:
    """Stop a validator, delete its chain and blobs (its key, config and genesis stay) and
    start it again with flags."""
    os.kill(node["pid"], signal.SIGTERM)
    _wait(lambda: not pathlib.Path(f"/proc/{node['pid']}").exists(), 30, "the validator to stop")
    home = pathlib.Path(node["home"])
    shutil.rmtree(home / "data")
    shutil.rmtree(home / "blobs")
    return _start(home, *flags)


def _start(home: pathlib.Path, *flags: str) -> subprocess.Popen:
    with open(home / "node.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home), *flags],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, NUMBA_NUM_THREADS="1"))


def _signed_by(url: str, key: str, after: int) -> bool:
    """Whether a block above `after` carries a commit that key's precommit is part of."""
    head = _height(url)
    for height in range(max(after + 1, head - 20), head + 1):
        block = _get(url, f"/blocks/{height}")
        if block and key in block["last_commit"]["signers"]:
            return True
    return False


def test_a_wiped_validator_state_syncs_past_1000_blocks_by_itself_and_validates_again(tmp_path):
    """Past height 1,000 (and the retention window) a node with an empty home takes a
    snapshot without being told, following the commits of the committee-changing blocks
    its pruning peers keep; one started with --archive replays the chain from genesis
    instead, from the devnet's archive validator (node-0)."""
    directory = tmp_path / "devnet"
    state = _up(directory, "--no-mine", "--block-interval-ms", "10", "--archives", "1")
    try:
        nodes = state["nodes"]
        url, synced = nodes[0]["url"], nodes[3]
        _wait(lambda: max([s["height"] for s in (_get(url, "/snapshots") or {}).get("snapshots", [])], default=0)
              >= 1000, 600, "a snapshot at height 1000 or more")
        node = _wipe_and_restart(synced, "--no-mine")
        archive_port = _free_base_port(1)
        archive_home = tmp_path / "archive"
        init_home(archive_home, directory / "genesis.json")
        archive = _start(archive_home, "--no-mine", "--archive", "--listen", f"127.0.0.1:{archive_port}",
                         "--peer", url.removeprefix("http://"))
        try:
            target = _height(url)
            # within 30 s of its start (about 6 s here: the snapshot installs in well under 1 s)
            _wait(lambda: _height(synced["url"]) >= target, 30, f"the synced node to reach height {target}")
            log = (pathlib.Path(synced["home"]) / "node.log").read_text()
            assert "beginning from a peer's snapshot" in log and "state sync: state at height" in log, log[-2000:]
            # it did not replay the chain: its first block is the snapshot's
            assert _get(synced["url"], "/blocks/1") is None
            assert _get(synced["url"], f"/blocks/{target}")["header"] == _get(url, f"/blocks/{target}")["header"]
            # and it validates: its precommits are in the commits of new blocks
            _wait(lambda: _signed_by(url, synced["public_key"], target), 60, "a commit with the synced node's precommit")
            # the archive replayed every block
            archive_url = f"http://127.0.0.1:{archive_port}"
            _wait(lambda: _height(archive_url) >= target, 180, f"the archive node to reach height {target}")
            assert _get(archive_url, "/blocks/1")["header"] == _get(url, "/blocks/1")["header"]
            assert "snapshot" not in (archive_home / "node.log").read_text()
            _a_validator_back_from_past_the_window_state_syncs(state, directory)
        finally:
            stop(node)
            stop(archive)
    finally:
        _down(directory)


def _a_validator_back_from_past_the_window_state_syncs(state: dict, directory: pathlib.Path) -> None:
    """A validator stopped for longer than the retention window, its home kept: the deltas
    of the rounds it missed are pruned, so on restart it replaces its store from a snapshot."""
    url, behind = state["nodes"][0]["url"], state["nodes"][2]
    genesis = json.loads((directory / "genesis.json").read_text())["consensus"]
    window = genesis["retention_rounds"] * genesis["round_blocks"]
    os.kill(behind["pid"], signal.SIGTERM)
    _wait(lambda: not pathlib.Path(f"/proc/{behind['pid']}").exists(), 30, "the validator to stop")
    home = pathlib.Path(behind["home"])
    stopped_at = max(int(line.split("finalized height ")[1].split()[0])
                     for line in (home / "node.log").read_text().splitlines() if "finalized height " in line)
    _wait(lambda: max([s["height"] for s in (_get(url, "/snapshots") or {}).get("snapshots", [])], default=0)
          > stopped_at + window, 300, "a snapshot past the stopped validator's retention window")
    node = _start(home, "--no-mine")
    try:
        target = _height(url)
        _wait(lambda: _height(behind["url"]) >= target, 120, f"the validator to reach height {target}")
        log = (home / "node.log").read_text()
        assert "more than the retention window" in log and log.count("state sync: state at height") == 1, log[-2000:]
        assert _get(behind["url"], "/blocks/1") is None  # its store is the snapshot's now
        _wait(lambda: _signed_by(url, behind["public_key"], target), 60, "a commit with its precommit")
    finally:
        stop(node)


class _TamperingPeer:
    """A peer's HTTP API that lists snapshots with one entry of a chunk changed and a
    manifest to match, and passes every other request to an honest node.  It lies one
    of two ways: "entry" keeps the chunk's subtree root (only the chunk's own check can
    catch it); "root" recomputes the subtree root and the state root too, so the
    manifest holds together and only the chain's header can catch it."""

    def __init__(self, honest_url: str, port: int, lie: str):
        self.honest_url = honest_url
        self.port = port
        self.lie = lie
        self.blobs: dict[str, bytes] = {}
        self.served_tampered = threading.Event()

    def _honest(self, path: str) -> bytes:
        with urllib.request.urlopen(self.honest_url + path, timeout=5) as reply:
            return reply.read()

    def _tamper(self, manifest_hex: str) -> str:
        manifest = SnapshotManifest.decode(self._honest(f"/blobs/{manifest_hex}"))
        index = next(i for i, s in enumerate(manifest.subtrees) if s.entries)
        chunk = Chunk.decode(self._honest(f"/blobs/{manifest.subtrees[index].digest.hex()}"))
        first = chunk.entries[0]
        entries = (Entry(first.key, first.value + b"\x00"), *chunk.entries[1:])
        forged = Chunk(entries).encode()
        root = manifest.subtrees[index].root
        if self.lie == "root":
            tree = StateTree.of((e.key, e.value) for e in entries)
            root = tree.subtree_root(manifest.depth, index)
        subtrees = list(manifest.subtrees)
        subtrees[index] = dataclasses.replace(subtrees[index], digest=sha256(forged), root=root)
        state_root = combined_root(subtrees) if self.lie == "root" else manifest.state_root
        tampered = dataclasses.replace(manifest, subtrees=tuple(subtrees), state_root=state_root).encode()
        self.blobs[sha256(forged).hex()] = forged
        self.blobs[sha256(tampered).hex()] = tampered
        return sha256(tampered).hex()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path_qs
        if request.path == "/snapshots":
            listed = json.loads(self._honest(path))
            for item in listed["snapshots"]:
                item["manifest"] = self._tamper(item["manifest"])
            return web.json_response(listed)
        name = request.path.removeprefix("/blobs/")
        if name in self.blobs:
            self.served_tampered.set()
            return web.Response(body=self.blobs[name])
        try:
            return web.Response(body=self._honest(path), content_type="application/json")
        except OSError:
            return web.json_response({"error": "not here"}, status=404)

    def run(self, stop: threading.Event) -> None:
        import asyncio

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            while not stop.is_set():
                await asyncio.sleep(0.1)
            await runner.cleanup()

        asyncio.run(serve())


def test_tampered_snapshots_are_refused_and_the_node_syncs_from_an_honest_peer_then_mines(tmp_path):
    directory = tmp_path / "devnet"
    state = _up(directory)
    liars_stop = threading.Event()
    try:
        nodes = state["nodes"]
        url, synced = nodes[0]["url"], nodes[3]
        base = _free_base_port(2)
        liars = [_TamperingPeer(url, base + i, lie) for i, lie in enumerate(("entry", "root"))]
        for liar in liars:
            threading.Thread(target=liar.run, args=(liars_stop,), daemon=True).start()
        _wait(lambda: (_get(url, "/snapshots") or {}).get("snapshots"), 240, "a first snapshot")
        peers = [f"127.0.0.1:{liar.port}" for liar in liars] + [n["url"].removeprefix("http://") for n in nodes[:3]]
        node = _wipe_and_restart(synced, "--state-sync", *[flag for peer in peers for flag in ("--peer", peer)])
        try:
            _wait(lambda: _height(synced["url"]) > 0, 120, "the synced node to answer")
            log = (pathlib.Path(synced["home"]) / "node.log").read_text()
            refusals = [line for line in log.splitlines() if "is refused" in line]
            assert all(liar.served_tampered.is_set() for liar in liars)
            entry_lie = next(line for line in refusals if f"127.0.0.1:{liars[0].port}" in line)
            assert "chunk" in entry_lie and "subtree root" in entry_lie, refusals
            root_lie = next(line for line in refusals if f"127.0.0.1:{liars[1].port}" in line)
            assert "state root" in root_lie and "chain's header" in root_lie, refusals
            # the state it holds is the chain's: the same header at a height both have
            height = _height(synced["url"])
            _wait(lambda: _height(url) >= height, 30, "node-0 to pass the synced height")
            assert _get(synced["url"], f"/blocks/{height}")["header"] == _get(url, f"/blocks/{height}")["header"]

            def mined_round():
                head = _height(url)
                first = (height - 1) // 30 + 1  # the first round that starts after the sync
                for r in range(first, max(first, head // 30)):
                    view = _get(url, f"/rounds/{r}") or {"units": []}
                    if any(u["miner"] == synced["public_key"] for u in view["units"]):
                        return view
                return None

            view = _wait(mined_round, 240, "a round with a unit of the synced node")
            unit = next(u for u in view["units"] if u["miner"] == synced["public_key"])
            assert unit["status"] in ("committed", "accepted"), unit
        finally:
            stop(node)
    finally:
        liars_stop.set()
        _down(directory)
