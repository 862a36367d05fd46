"""A 4-validator devnet of real `uponode start` processes on 127.0.0.1, perturbed as in
CometBFT's e2e tests (kill -9, restart, a late joiner, all killed at once), with
every invariant checked only through the public HTTP API and the nodes' logs."""
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from node.storage.config import NodeConfig, render_config
from node.storage.home import init_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEVNET = [sys.executable, str(ROOT / "scripts" / "devnet.py")]


def _free_base_port(count: int) -> int:
    for base in range(28000, 60000, 97):
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports")


@contextlib.contextmanager
def running_devnet(directory: pathlib.Path, *flags: str, base_port: int | None = None):
    """`scripts/devnet.py up` with flags in directory (on free ports from base_port), stopped
    with `down` whatever happens; yields directory."""
    nodes = 2 + int(flags[flags.index("--validators") + 1])
    port = base_port if base_port is not None else _free_base_port(nodes)
    subprocess.run([*DEVNET, "up", *flags, "--dir", str(directory), "--base-port", str(port)],
                   check=True, capture_output=True, timeout=600)  # on a fresh checkout `up` first compiles the kernels
    try:
        yield directory
    finally:
        subprocess.run([*DEVNET, "down", "--dir", str(directory)], capture_output=True, timeout=60)


def _get(url: str, path: str):
    try:
        with urllib.request.urlopen(url + path, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _height(url: str) -> int:
    status = _get(url, "/status")
    return status["height"] if status else -1


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Devnet:
    def __init__(self, directory: pathlib.Path, base_port: int):
        self.dir = directory
        self.base_port = base_port
        self.extra_pids: list[int] = []
        # consensus and the network are the subject here: the validators do not mine
        subprocess.run([*DEVNET, "up", "--validators", "4", "--dir", str(directory),
                        "--base-port", str(base_port), "--no-mine"], check=True, capture_output=True,
                       timeout=180)
        self.nodes = json.loads((directory / "devnet.json").read_text())["nodes"]
        self.urls = [n["url"] for n in self.nodes]

    def start(self, home: str) -> int:
        with open(pathlib.Path(home) / "node.log", "ab") as log:
            pid = subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", home],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True).pid
        self.extra_pids.append(pid)
        return pid

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # started by devnet.py, not our child

    def down(self) -> None:
        subprocess.run([*DEVNET, "down", "--dir", str(self.dir)], capture_output=True, timeout=60)
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def signers_after(self, url: str, height: int) -> set[str]:
        block = _get(url, f"/blocks/{height + 1}")
        return set(block["last_commit"]["signers"]) if block else set()


@pytest.fixture
def devnet(tmp_path):
    net = Devnet(tmp_path / "devnet", _free_base_port(6))
    yield net
    net.down()


def _same_hashes(urls: list[str], upto: int, first: int = 1) -> None:
    for height in range(first, upto + 1):
        hashes = {(_get(u, f"/blocks/{height}") or {}).get("header", {}).get("hash") for u in urls}
        assert len(hashes) == 1 and None not in hashes, f"height {height}: {hashes}"


def test_devnet_finalizes_survives_kills_restarts_and_a_late_joiner(devnet, tmp_path):
    urls = devnet.urls
    # 1. thirty blocks, identical on every node
    _wait(lambda: min(_height(u) for u in urls) >= 30, 120, "30 blocks on every node")
    _same_hashes(urls, 30)

    # 2. kill -9 one validator: the other three keep finalizing
    victim = devnet.nodes[2]
    devnet.kill(victim["pid"])
    others = [u for u in urls if u != victim["url"]]
    before = max(_height(u) for u in others)
    _wait(lambda: min(_height(u) for u in others) >= before + 5, 60, "progress without node-2")

    # 3. restarted, it syncs and signs again within 20 s
    restarted_at = max(_height(u) for u in others)
    devnet.start(victim["home"])
    _wait(lambda: _height(victim["url"]) >= restarted_at, 20, "node-2 to catch up")
    _wait(lambda: any(victim["public_key"] in devnet.signers_after(others[0], h)
                      for h in range(restarted_at, _height(others[0]))), 20, "node-2 to sign again")

    # 4. a fifth node started late syncs from genesis
    late_home = tmp_path / "late"
    late_port = devnet.base_port + 5
    late_home.mkdir()
    (late_home / "config.toml").write_text(render_config(NodeConfig(
        listen=f"127.0.0.1:{late_port}", peers=tuple(u.removeprefix("http://") for u in urls))))
    init_home(late_home, devnet.dir / "genesis.json")
    target = _height(urls[0])
    devnet.start(str(late_home))
    late_url = f"http://127.0.0.1:{late_port}"
    _wait(lambda: _height(late_url) >= target, 60, "the late node to sync")
    _same_hashes([urls[0], late_url], target)

    # 5. all four validators killed together and restarted: no height goes backwards
    heights = {u: _height(u) for u in urls}
    pids = [n["pid"] for n in devnet.nodes[:2] + devnet.nodes[3:]] + [devnet.extra_pids[0]]
    for pid in pids:
        devnet.kill(pid)
    for node in devnet.nodes:
        devnet.start(node["home"])
    _wait(lambda: all(_height(u) >= heights[u] for u in urls), 30, "the validators to come back")
    resumed = max(heights.values())
    _wait(lambda: min(_height(u) for u in urls) >= resumed + 5, 60, "progress after the restart")
    # the late node redials the validators with backoff: it catches up after them
    _wait(lambda: _height(late_url) >= resumed + 5, 60, "the late node to follow the restart")
    # from before the restart (past the retention window older blocks are pruned)
    _same_hashes(urls + [late_url], resumed + 5, first=min(heights.values()) - 10)
    for node in devnet.nodes:
        log = (pathlib.Path(node["home"]) / "node.log").read_text()
        assert "conflicting votes" not in log, f"{node['name']} saw equivocation"


async def _attack(url: str, genesis_hash: bytes, chain_id: str) -> list[str]:
    """Abuse node url's peer endpoint; returns how each connection ended."""
    import os as _os

    import aiohttp

    from node.types.crypto import SigningKey
    from node.net.p2p_protocol import Handshake, HandshakeState
    from node.net.wire import MAX_FRAME_BYTES, HelloAck, Status, decode_message, encode_message

    endings = []
    endpoint = url.replace("http://", "ws://") + "/p2p"
    async with aiohttp.ClientSession() as session:
        # first a flood from a peer with a real handshake (the later attacks ban the host)
        async with session.ws_connect(endpoint) as ws:
            handshake = Handshake(SigningKey(_os.urandom(32)), chain_id, genesis_hash,
                                  "127.0.0.1:9", 0, _os.urandom(32))
            await ws.send_bytes(encode_message(handshake.start()))
            while handshake.state is not HandshakeState.ESTABLISHED:
                for reply in handshake.receive(decode_message((await ws.receive(timeout=5)).data)):
                    await ws.send_bytes(encode_message(reply))
            frame = encode_message(Status(0, bytes(32)))
            try:
                for _ in range(30_000):
                    await ws.send_bytes(frame)
            except ConnectionError:
                pass  # closed on us mid-flood
            async for _ in ws:
                pass
            endings.append(f"flood closed: {ws.close_code}")
    attacks = [
        # a Hello for another genesis, then a bad handshake signature, garbage, an oversize frame
        lambda: [encode_message(Handshake(SigningKey(_os.urandom(32)), chain_id, bytes(32),
                                          "127.0.0.1:9", 0, _os.urandom(32)).start())],
        lambda: [encode_message(Handshake(SigningKey(_os.urandom(32)), chain_id, genesis_hash,
                                          "127.0.0.1:9", 0, _os.urandom(32)).start()),
                 encode_message(HelloAck(bytes(64)))],
        lambda: [b"\xff" * 64],
        lambda: [bytes(MAX_FRAME_BYTES + 1)],
    ]
    async with aiohttp.ClientSession() as session:
        for frames in attacks:
            try:
                async with session.ws_connect(endpoint, max_msg_size=0) as ws:
                    for frame in frames():
                        await ws.send_bytes(frame)
                    async for _ in ws:
                        pass
                    endings.append(f"closed: {ws.close_code}")
            except (aiohttp.ClientError, ConnectionError) as exc:
                endings.append(f"refused: {type(exc).__name__}")
    return endings


def test_abuse_of_one_node_does_not_stop_finality(devnet):
    import asyncio

    from node.types.genesis import load_genesis

    urls = devnet.urls
    _wait(lambda: min(_height(u) for u in urls) >= 3, 60, "a running devnet")
    genesis = load_genesis(devnet.dir / "genesis.json")
    endings = asyncio.run(asyncio.wait_for(
        _attack(urls[0], bytes.fromhex(genesis.hash), genesis.chain_id), 120))
    assert len(endings) == 5 and all(e.startswith(("flood closed", "closed", "refused"))
                                     for e in endings), endings
    before = max(_height(u) for u in urls)
    _wait(lambda: min(_height(u) for u in urls) >= before + 5, 60, "finality after the attacks")
    _same_hashes(urls, before + 5)
    log = (pathlib.Path(devnet.nodes[0]["home"]) / "node.log").read_text()
    assert "flooding" in log and "banned" in log
