"""The devnet of one e2e run: its genesis, homes, ports, proxies and processes.

Laid out as scripts/devnet.py lays one out (a genesis from genesis.builder.build_devnet,
a home per node initialised with its validator key, its node.log beside it), with one
difference: validator i's config names, for every other validator j, the port of the
proxy (i→j) instead of j's own, so that the runner can cut any link.  Nodes dial only
their configured peers (peer exchange off), so every validator-to-validator connection
crosses a proxy.
Light auditors read the validators' HTTP APIs directly: they are clients, not part of
the consensus network, and no perturbation targets them.

Every process is started in its own session, so that the runner's signals reach a
node together with its compute worker, and Ctrl-C at the terminal reaches only the
runner, which stops them all.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

from genesis.builder import build_devnet
from node.storage.config import NodeConfig, render_config
from node.storage.home import init_home, read_key_file
from node.types.crypto import SigningKey
from node.types.errors import CommandError
from node.types.genesis import Genesis, GenesisError, load_genesis
from tests.e2e.manifest import DevnetSpec
from tests.e2e.proxy import HOST, LinkProxy

ROOT = pathlib.Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 15.0
COMPILE_TIMEOUT_S = 600  # a fresh checkout compiles every kernel once
# A small model: the runs are about consensus under faults, and four miners and an
# auditor share two cores.  No epoch ends within a run, so the genesis validators
# stay the committee throughout.
SMALL_MODEL = {
    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "context_length": 16},
    "training": {"batch_size": 2, "steps_per_unit": 6, "checkpoint_every": 1},
    "eval": {"batches": 2},
    "consensus": {"epoch_rounds": 1000},
}


class DevnetError(Exception):
    """The devnet cannot be laid out or started; the message is one line."""


@dataclasses.dataclass
class NodeProcess:
    """One `uponode start` or `uponode audit` process, which can be stopped and started again."""
    name: str
    home: pathlib.Path
    command: str  # "start" or "audit"
    public_key: str
    url: str | None = None  # a validator's HTTP API
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> pathlib.Path:
        return self.home / "node.log"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node.cli", self.command, "--home", str(self.home)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                # every node trains or audits on the same two cores: one thread each
                env=dict(os.environ, NUMBA_NUM_THREADS="1"), start_new_session=True)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the node and its compute worker (its session's process group)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    async def stop(self) -> None:
        """SIGTERM (a paused node is resumed first, or it never handles it); SIGKILL if it
        has not exited within STOP_TIMEOUT_S.  Whatever it left in its group goes too."""
        if self.process is None:
            return
        self.signal(signal.SIGCONT)
        if self.process.poll() is None:
            self.process.terminate()
        deadline = asyncio.get_running_loop().time() + STOP_TIMEOUT_S
        while self.process.poll() is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        self.signal(signal.SIGKILL)
        self.process.wait()


def _reserve_port() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1, held until the node is about to listen
    on it, so that no proxy is given the same port meanwhile."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    return sock


def _write_genesis(spec: DevnetSpec, directory: pathlib.Path, accounts: int) -> pathlib.Path:
    path = build_devnet(spec.validators, directory, funded_accounts=accounts)
    raw = json.loads(path.read_text())
    for section, values in SMALL_MODEL.items():
        raw[section].update(values)
    raw["consensus"].update(round_blocks=spec.round_blocks, commit_blocks=spec.commit_blocks,
                            block_interval_ms=spec.block_interval_ms, retention_rounds=spec.retention_rounds)
    path.write_text(json.dumps(raw, indent=2) + "\n")
    return path


class Devnet:
    """Validators node-0.. behind their link proxies, and auditors auditor-0.."""

    def __init__(self, directory: pathlib.Path, genesis_path: pathlib.Path, genesis: Genesis,
                 n_validators: int):
        self.directory = directory
        self.genesis_path = genesis_path
        self.genesis = genesis
        self.validators: list[NodeProcess] = []
        self.auditors: list[NodeProcess] = []
        self.senders: list[SigningKey] = []  # funded accounts for the transfer load
        self._reserved = [_reserve_port() for _ in range(n_validators)]
        self.ports = [sock.getsockname()[1] for sock in self._reserved]
        # (i, j): the link by which node i dials node j
        self.proxies = {(i, j): LinkProxy(self.ports[j])
                        for i in range(n_validators) for j in range(n_validators) if i != j}

    @classmethod
    async def create(cls, spec: DevnetSpec, directory: pathlib.Path, senders: int) -> "Devnet":
        """Write the genesis, keys and homes into directory and start the proxies."""
        try:
            genesis_path = _write_genesis(spec, directory, senders + spec.auditors)
            genesis = load_genesis(genesis_path)
        except (CommandError, GenesisError) as exc:
            raise DevnetError(f"cannot write the genesis: {exc}") from None
        devnet = cls(directory, genesis_path, genesis, spec.validators)
        try:
            for proxy in devnet.proxies.values():
                await proxy.start()
            devnet._write_homes(spec, senders)
        except BaseException:
            await devnet.close()
            raise
        return devnet

    def _write_homes(self, spec: DevnetSpec, senders: int) -> None:
        keys = self.directory / "keys"
        for i, port in enumerate(self.ports):
            key = read_key_file(keys / f"validator-{i}.json")
            home = self.directory / f"node-{i}"
            home.mkdir()
            peers = tuple(f"{HOST}:{self.proxies[(i, j)].port}"
                          for j in range(spec.validators) if j != i)
            # no peer exchange: it would find the other validators' own addresses and dial
            # them past the proxies, which a manifest's cuts must be the only way through
            (home / "config.toml").write_text(render_config(
                NodeConfig(listen=f"{HOST}:{port}", peers=peers, mine=spec.mine, peer_exchange=False)))
            init_home(home, self.genesis_path, key=key)
            self.validators.append(NodeProcess(f"node-{i}", home, "start", key.public_key.hex(),
                                               url=f"http://{HOST}:{port}"))
        for j in range(spec.auditors):
            key = read_key_file(keys / f"account-{senders + j}.json")
            home = self.directory / f"auditor-{j}"
            home.mkdir()
            (home / "config.toml").write_text(render_config(
                NodeConfig(peers=tuple(f"{HOST}:{port}" for port in self.ports), mine=False)))
            init_home(home, self.genesis_path, key=key)
            self.auditors.append(NodeProcess(f"auditor-{j}", home, "audit", key.public_key.hex()))
        self.senders = [read_key_file(keys / f"account-{k}.json") for k in range(senders)]

    async def compile_kernels(self) -> None:
        """Compile the kernels once into numba's on-disk cache before the nodes start, as
        scripts/devnet.py does: nodes compiling them all at once on two cores would miss
        the first rounds."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.cli", "train", "--genesis", str(self.genesis_path),
            "--steps", "1", "--json", cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), COMPILE_TIMEOUT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode != 0:
            lines = stderr.decode(errors="replace").strip().splitlines() or ["no output"]
            raise DevnetError(f"compiling the kernels failed: {lines[-1]}")

    def start(self) -> None:
        for sock in self._reserved:
            sock.close()
        self._reserved = []
        for node in self.validators + self.auditors:
            node.start()

    async def close(self) -> None:
        """Stop every process and proxy; safe to call whatever state the run is in."""
        for sock in self._reserved:
            sock.close()
        await asyncio.gather(*(node.stop() for node in self.validators + self.auditors))
        await asyncio.gather(*(proxy.close() for proxy in self.proxies.values()))
