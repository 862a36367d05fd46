"""A local devnet: N validators (each its own `uponode start` process) on 127.0.0.1.

    python scripts/devnet.py up --validators N [--auditors M] [--dir DIR] [--base-port P]
                                [--accounts K] [--block-interval-ms MS] [--no-mine] [--archives A]
    python scripts/devnet.py status --dir DIR
    python scripts/devnet.py down --dir DIR

`up` writes a fresh genesis with N validator keys into DIR, gives each validator a
home DIR/node-<i> (its own ports, LevelDB and log file node.log), starts them, and
returns once every node answers its HTTP API, printing each URL.  The validators
mine.  With --auditors M it also starts M light-audit nodes (`uponode audit`, homes
DIR/auditor-<j>, each with a funded account that bonds itself and registers as an
auditor) that follow the validators.  With --archives A the first A validators keep
every block (`uponode start --archive`), so that a new node can replay the chain from
genesis past the retention window.  `down` stops
exactly the processes `up` started (their pids are in DIR/devnet.json, checked
against their command lines) and nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genesis.builder import build_devnet  # noqa: E402
from node.storage.config import NodeConfig, render_config  # noqa: E402
from node.storage.home import init_home, read_key_file  # noqa: E402
from node.types.errors import CommandError  # noqa: E402
from node.types.genesis import DEFAULT_GENESIS, GenesisError  # noqa: E402

STATE_FILE = "devnet.json"
READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 15


class DevnetError(Exception):
    """A devnet command that cannot run; the message is one line for the user."""


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _get_status(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url + "/status", timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _start_process(home: pathlib.Path, command: list[str], threads: int) -> int:
    log = open(home / "node.log", "ab")
    # every process trains or audits on the same cores: share them out, not oversubscribe
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", *command, "--home", str(home)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        start_new_session=True)  # survives this script; `down` stops it by pid
    log.close()
    return process.pid


def _compile_kernels(genesis_path: pathlib.Path) -> None:
    """Compile the training kernels once, into numba's on-disk cache, before the nodes
    start: otherwise every node and worker compiles them at once on a fresh checkout,
    and the first rounds' units miss their train phase."""
    result = subprocess.run([sys.executable, "-m", "node.cli", "train", "--genesis",
                             str(genesis_path), "--steps", "1", "--json"],
                            cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise DevnetError(f"compiling the kernels failed: {lines[-1]}")


def up(n_validators: int, n_auditors: int, directory: pathlib.Path, base_port: int,
       n_accounts: int = 0, block_interval_ms: int | None = None, mine: bool = True,
       n_archives: int = 0, units: list[int] | None = None,
       base_genesis: pathlib.Path = DEFAULT_GENESIS) -> dict:
    if n_validators < 1:
        raise DevnetError("--validators must be 1 or more")
    if not 0 <= n_archives <= n_validators:
        raise DevnetError(f"--archives must be 0..{n_validators} (the validators)")
    if n_auditors < 0:
        raise DevnetError("--auditors must be 0 or more")
    if (directory / STATE_FILE).exists():
        raise DevnetError(f"{directory} already holds a devnet; run `down --dir {directory}` first")
    directory.mkdir(parents=True, exist_ok=True)
    units = [1] * n_validators if units is None else units
    if len(units) == 1:
        units = units * n_validators
    if len(units) != n_validators:
        raise DevnetError(f"--units: one count, or one per validator ({n_validators}), got {len(units)}")
    genesis_path = build_devnet(n_validators, directory, funded_accounts=n_accounts + n_auditors,
                                base=base_genesis, units=units)
    if block_interval_ms is not None:
        raw = json.loads(genesis_path.read_text())
        raw["consensus"]["block_interval_ms"] = block_interval_ms
        genesis_path.write_text(json.dumps(raw, indent=2) + "\n")
    ports = [base_port + i for i in range(n_validators)]
    nodes = []
    for i, port in enumerate(ports):
        home = directory / f"node-{i}"
        home.mkdir()
        peers = tuple(f"127.0.0.1:{p}" for p in ports if p != port)
        (home / "config.toml").write_text(render_config(
            NodeConfig(listen=f"127.0.0.1:{port}", peers=peers, mine=mine, units=units[i])))
        key = read_key_file(directory / "keys" / f"validator-{i}.json")
        init_home(home, genesis_path, key=key)
        nodes.append({"name": f"node-{i}", "home": str(home), "url": _url(port),
                      "public_key": key.public_key.hex(), "archive": i < n_archives})
    auditors = []
    for j in range(n_auditors):
        home = directory / f"auditor-{j}"
        home.mkdir()
        (home / "config.toml").write_text(render_config(
            NodeConfig(peers=tuple(f"127.0.0.1:{p}" for p in ports), mine=False)))
        key = read_key_file(directory / "keys" / f"account-{n_accounts + j}.json")
        init_home(home, genesis_path, key=key)
        auditors.append({"name": f"auditor-{j}", "home": str(home), "url": None,
                         "public_key": key.public_key.hex()})
    threads = max(1, (os.cpu_count() or 1) // (n_validators + n_auditors))
    if mine or n_auditors:
        _compile_kernels(genesis_path)
    for node in nodes:
        node["pid"] = _start_process(pathlib.Path(node["home"]), ["start"] + ["--archive"] * node["archive"],
                                     threads)
    for auditor in auditors:
        auditor["pid"] = _start_process(pathlib.Path(auditor["home"]), ["audit"], threads)
    state = {"nodes": nodes + auditors}
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))
    deadline = time.monotonic() + READY_TIMEOUT_S
    for node in nodes:
        while _get_status(node["url"]) is None:
            if time.monotonic() > deadline:
                raise DevnetError(f"{node['name']} did not answer at {node['url']} within "
                                  f"{READY_TIMEOUT_S}s; see {node['home']}/node.log")
            if not _alive(node["pid"], node["home"]):
                raise DevnetError(f"{node['name']} exited; see {node['home']}/node.log")
            time.sleep(0.2)
    return state


def _load_state(directory: pathlib.Path) -> dict:
    try:
        return json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        raise DevnetError(f"{directory} holds no devnet ({STATE_FILE} not found)") from None
    except ValueError:
        raise DevnetError(f"{directory / STATE_FILE} is not valid JSON") from None


def _alive(pid: int, home: str) -> bool:
    """True if pid is still the uponode process started for home (not a reused pid)."""
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"node.cli" in cmdline and home.encode() in cmdline


def status(directory: pathlib.Path) -> list[dict]:
    rows = []
    for node in _load_state(directory)["nodes"]:
        info = (_get_status(node["url"]) if node["url"] else None) or {}
        rows.append({"name": node["name"], "url": node["url"],
                     "running": _alive(node["pid"], node["home"]),
                     "height": info.get("height"), "head_hash": info.get("head_hash"),
                     "peers": len(info.get("peers", []))})
    return rows


def down(directory: pathlib.Path) -> int:
    state = _load_state(directory)
    running = [n for n in state["nodes"] if _alive(n["pid"], n["home"])]
    for node in running:
        os.kill(node["pid"], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(_alive(n["pid"], n["home"]) for n in running):
        time.sleep(0.1)
    for node in running:
        if _alive(node["pid"], node["home"]):
            os.kill(node["pid"], signal.SIGKILL)
    (directory / STATE_FILE).rename(directory / (STATE_FILE + ".stopped"))
    return len(running)


def _unit_counts(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 2 or 2,1,1,1, got {text!r}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a local uponode devnet.")
    commands = parser.add_subparsers(dest="command", required=True)
    p_up = commands.add_parser("up", help="create and start a devnet")
    p_up.add_argument("--validators", type=int, default=4)
    p_up.add_argument("--auditors", type=int, default=0)
    p_up.add_argument("--dir", type=pathlib.Path, default=pathlib.Path("devnet"))
    p_up.add_argument("--base-port", type=int, default=26600)
    p_up.add_argument("--accounts", type=int, default=0,
                      help="extra funded accounts (keys in DIR/keys/account-<i>.json)")
    p_up.add_argument("--block-interval-ms", type=int,
                      help="pause between blocks (default: the genesis's)")
    p_up.add_argument("--no-mine", action="store_true",
                      help="validators only finalize blocks (for network benchmarks)")
    p_up.add_argument("--archives", type=int, default=0,
                      help="how many validators keep every block (uponode start --archive)")
    p_up.add_argument("--genesis", type=pathlib.Path, default=DEFAULT_GENESIS, metavar="FILE",
                      help="the genesis whose parameters the devnet takes, with fresh keys "
                           "(default: genesis/devnet.json; genesis/testnet.json is sized for GPU miners)")
    p_up.add_argument("--units", type=_unit_counts, default=None, metavar="N[,N...]",
                      help="work units each validator takes a round: one count for all, or one per "
                           "validator (default 1; each unit is bonded)")
    for name in ("status", "down"):
        p = commands.add_parser(name)
        p.add_argument("--dir", type=pathlib.Path, default=pathlib.Path("devnet"))
    args = parser.parse_args()
    try:
        if args.command == "up":
            state = up(args.validators, args.auditors, args.dir, args.base_port, args.accounts,
                       args.block_interval_ms, mine=not args.no_mine,
                       n_archives=args.archives, units=args.units, base_genesis=args.genesis)
            for node in state["nodes"]:
                print(f"{node['name']}  {node['url'] or 'light-audit'}  pid {node['pid']}")
        elif args.command == "status":
            for row in status(args.dir):
                print("  ".join(f"{k}={v}" for k, v in row.items()))
        else:
            print(f"stopped {down(args.dir)} node(s)")
    except (DevnetError, CommandError, GenesisError) as exc:
        print(f"devnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
