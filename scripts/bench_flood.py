"""Floods against a live devnet: how finality, an honest user, mining and each node's
memory fare while the node's spam defences are attacked.

    python scripts/bench_flood.py [--seconds 30] [--accounts 16] [--no-mine] [--base-port 31700]
                                  [--settle 20] [--dir DIR]

Starts a 4-validator devnet (scripts/devnet.py, mining unless --no-mine) with funded
accounts for an honest probe, then runs a baseline phase with no flood and one phase
per flood of scripts/floods.py, each for --seconds, one after the other.  The honest
probe (scripts/flood_watch.py) sends a funded transfer every second throughout; the
node watch samples every node's RSS and consensus-messages gauge every second.  Each
flood runs in a process of its own, so that its work does not delay the probe's clock.
The p2p floods and the vote flood aim at node-0 (the vote flood signs with node-3's
key), the mempool flood at every node from another loopback address (another client
to the per-client rate limits).  After a phase, the transfers submitted in it get up
to --settle seconds to land before the phase is reported.

Prints one JSON object per phase: finality of the honest transfers submitted in it
(p50, p99), blocks finalized, transfers landed and refused, work commitments landed in
its blocks and the units of each round whose commit deadline fell in it (GET
/rounds/{r}), each node's largest RSS and consensus-messages gauge, and the flood's own
counters.  Stops the devnet whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import multiprocessing
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterator

import aiohttp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.flood_watch import HonestProbe, NodeWatch, WatchedNode, units_by_round  # noqa: E402
from scripts.floods import FLOODS, ChainInfo, run_flood  # noqa: E402

DEVNET = [sys.executable, str(ROOT / "scripts" / "devnet.py")]
VALIDATORS = 4
PHASES = ("baseline", *FLOODS)
START_TIMEOUT_S = 120
FLOOD_SOURCE = "127.0.0.2"  # the mempool flood's client address; the probe's is 127.0.0.1


@dataclasses.dataclass(frozen=True)
class DevnetRun:
    directory: pathlib.Path
    nodes: list[WatchedNode]
    chain: ChainInfo
    accounts: int

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]


@contextlib.contextmanager
def devnet(directory: pathlib.Path, base_port: int, accounts: int, mine: bool) -> Iterator[DevnetRun]:
    """A running 4-validator devnet in directory, stopped on the way out."""
    command = [*DEVNET, "up", "--validators", str(VALIDATORS), "--dir", str(directory),
               "--base-port", str(base_port), "--accounts", str(accounts)]
    try:
        subprocess.run(command + ([] if mine else ["--no-mine"]), check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
        nodes = json.loads((directory / "devnet.json").read_text())["nodes"]
        yield DevnetRun(directory, [WatchedNode(n["name"], n["url"], n["pid"]) for n in nodes],
                        ChainInfo.of_home(pathlib.Path(nodes[0]["home"])), accounts)
    finally:
        if (directory / "devnet.json").exists():
            subprocess.run([*DEVNET, "down", "--dir", str(directory)], stdout=subprocess.DEVNULL,
                           timeout=120)


async def _status(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/status") as response:
        return await response.json()


async def _phase(name: str, net: DevnetRun, seconds: float, settle_s: float,
                 pool: concurrent.futures.Executor, probe: HonestProbe, watch: NodeWatch) -> dict:
    observer = probe.observer
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        first_round = (await _status(session, observer))["round"]
        start = time.monotonic()
        if name == "baseline":
            await asyncio.sleep(seconds)
            counters = {}
        else:
            flood = functools.partial(run_flood, name, str(net.directory), seconds, target=0,
                                      byzantine=-1, source=FLOOD_SOURCE)
            counters = await asyncio.get_running_loop().run_in_executor(pool, flood)
        end = time.monotonic()
        while probe.pending_from(start, end) and time.monotonic() < end + settle_s:
            await asyncio.sleep(0.5)
        last_round = (await _status(session, observer))["round"]
        units = await units_by_round(session, observer, range(first_round, last_round + 1),
                                     probe.heights(start, end))
    counters.pop("flood", None)
    return {"phase": name, "seconds": round(end - start, 1), **probe.window(start, end),
            "units_by_round": units, **watch.window(start, end), **counters}


async def run_phases(net: DevnetRun, phases: tuple[str, ...], seconds: float, settle_s: float,
                     report: Callable[[dict], None] = lambda line: None) -> list[dict]:
    """Run the phases in turn with the probe and the watch running throughout; report
    each phase's line as it ends, and return them all."""
    observer = net.urls[-1]  # a node no p2p flood aims at
    probe = HonestProbe.for_devnet(net.directory, net.urls, observer, net.accounts,
                                   net.chain.chain_id, net.chain.min_tx_fee)
    watch = NodeWatch(net.nodes)
    stop = asyncio.Event()
    running = [asyncio.create_task(probe.run(stop)), asyncio.create_task(watch.run(stop))]
    lines = []
    try:
        started = time.monotonic()
        while len(probe.blocks) < 2:  # the chain moves and the probe sees it
            if time.monotonic() > started + START_TIMEOUT_S:
                raise RuntimeError(f"no block finalized at {observer} in {START_TIMEOUT_S} s")
            await asyncio.sleep(0.5)
        # floods run in a process of their own, started now so that its start-up is not
        # inside the first phase
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
            await asyncio.get_running_loop().run_in_executor(pool, time.sleep, 0)
            for name in phases:
                lines.append(await _phase(name, net, seconds, settle_s, pool, probe, watch))
                report(lines[-1])
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="length of each phase")
    parser.add_argument("--settle", type=float, default=20,
                        help="seconds a phase's transfers get to land after it")
    parser.add_argument("--accounts", type=int, default=16, help="funded accounts of the probe")
    parser.add_argument("--no-mine", action="store_true", help="validators do not mine")
    parser.add_argument("--base-port", type=int, default=31700)
    parser.add_argument("--dir", type=pathlib.Path,
                        help="devnet directory to keep (node logs); default: a temporary one")
    args = parser.parse_args()

    def report(line: dict) -> None:
        print(json.dumps(line), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.dir or pathlib.Path(tmp) / "devnet"
        with devnet(directory, args.base_port, args.accounts, mine=not args.no_mine) as net:
            print(f"devnet up at {', '.join(net.urls)}", file=sys.stderr)
            asyncio.run(run_phases(net, PHASES, args.seconds, args.settle, report))


if __name__ == "__main__":
    main()
