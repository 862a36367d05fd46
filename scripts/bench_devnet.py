"""Load generator and benchmark for a local devnet of real processes.

    python scripts/bench_devnet.py [--validators 4] [--rate 1000] [--seconds 20] [--senders 512]
                                   [--sync-blocks 400]

Starts a devnet (scripts/devnet.py) with funded sender accounts, then:
1. finality latency: transfers are submitted at --rate per second (spread over the
   nodes' POST /txs); each one's latency is from its submission to the moment a
   poller sees the block holding it finalized;
2. sustained throughput: finalized transfers per second over the load window;
3. block sync: on a second devnet that makes empty blocks fast (10 ms apart), a
   fresh non-validator node joins once --sync-blocks exist and syncs them all from
   genesis (--archive); blocks per second from its first answer to reaching the head;
4. state sync: then another fresh node joins with --state-sync (a snapshot, the chain's
   commits checked from genesis, then block sync); seconds to reach the head.
Prints one JSON object per line and stops everything it started.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.storage.config import NodeConfig, render_config  # noqa: E402
from node.storage.home import init_home, read_key_file  # noqa: E402
from node.types.transactions import Transfer, sign_tx  # noqa: E402

DEVNET = [sys.executable, str(ROOT / "scripts" / "devnet.py")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _status(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/status") as response:
        return await response.json()


async def _load(urls: list[str], directory: pathlib.Path, senders: int, rate: int,
                seconds: float) -> dict:
    genesis = json.loads((directory / "genesis.json").read_text())
    keys = [read_key_file(directory / "keys" / f"account-{i}.json") for i in range(senders)]
    target = keys[0].public_key
    total = int(rate * seconds)
    # sign everything first: the client's signing is not what is measured
    fee = genesis["economics"]["min_tx_fee"]
    txs = [sign_tx(keys[i % senders], genesis["chain_id"], i // senders, Transfer(target, 1), fee)
           for i in range(total)]
    submitted: dict[str, float] = {}
    finalized: dict[str, float] = {}
    refused: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as session:
        start_height = (await _status(session, urls[0]))["height"]
        stop_polling = asyncio.Event()

        async def poll() -> None:
            height = start_height
            while not stop_polling.is_set():
                head = (await _status(session, urls[0]))["height"]
                while height < head:
                    height += 1
                    async with session.get(f"{urls[0]}/blocks/{height}") as response:
                        block = await response.json()
                    now = time.perf_counter()
                    for tx in block["txs"]:
                        finalized.setdefault(tx["hash"], now)
                await asyncio.sleep(0.02)

        async def submit(i: int) -> None:
            tx = txs[i]
            submitted[tx.hash.hex()] = time.perf_counter()
            async with session.post(urls[i % len(urls)] + "/txs", data=tx.encode().hex()) as response:
                if response.status != 200:
                    reply = await response.json(content_type=None)
                    refused[reply.get("reason", str(response.status))] += 1

        poller = asyncio.create_task(poll())
        started = time.perf_counter()
        pending = set()
        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.add(asyncio.create_task(submit(i)))
            if len(pending) > 256:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)
        deadline = time.perf_counter() + 30
        while len(finalized) < total - sum(refused.values()) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        ended = max(finalized.values(), default=time.perf_counter())
        stop_polling.set()
        await poller
    latencies = [finalized[h] - t for h, t in submitted.items() if h in finalized]
    return {"bench": "devnet_load", "offered_tx_per_s": rate, "submitted": total, "refused": dict(refused),
            "finalized": len(latencies),
            "sustained_finalized_tx_per_s": round(len(latencies) / (ended - started), 1),
            "finality_latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "finality_latency_p99_s": round(percentile(latencies, 0.99), 3) if latencies else None}


async def _sync_speed(urls: list[str], directory: pathlib.Path, port: int, state_sync: bool) -> dict:
    home = directory / ("late-state-sync" if state_sync else "late")
    home.mkdir()
    (home / "config.toml").write_text(render_config(NodeConfig(
        listen=f"127.0.0.1:{port}", peers=tuple(u.removeprefix("http://") for u in urls))))
    init_home(home, directory / "genesis.json")
    async with aiohttp.ClientSession() as session:
        head = (await _status(session, urls[0]))["height"]
        log = open(home / "node.log", "ab")
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home),
                                    "--state-sync" if state_sync else "--archive"],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            answered = None
            while True:
                try:
                    height = (await _status(session, url))["height"]
                    answered = answered or time.perf_counter()
                except (aiohttp.ClientError, OSError):
                    height = -1
                if height >= head:
                    break
                await asyncio.sleep(0.05)
            ended = time.perf_counter()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            log.close()
    result = {"bench": "state_sync" if state_sync else "block_sync", "blocks": head,
              "seconds_from_process_start": round(ended - started, 2)}
    if not state_sync:  # a state-syncing node answers only once its snapshot is in
        result["blocks_per_s_from_first_answer"] = round(head / max(ended - answered, 1e-9), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--senders", type=int, default=512)
    parser.add_argument("--sync-blocks", type=int, default=400)
    parser.add_argument("--base-port", type=int, default=29400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with _devnet(pathlib.Path(tmp) / "load", args, args.senders, None) as (directory, urls):
            print(json.dumps(asyncio.run(_load(urls, directory, args.senders, args.rate,
                                                args.seconds))), flush=True)
        with _devnet(pathlib.Path(tmp) / "sync", args, 0, 10) as (directory, urls):
            _wait_for_height(urls[0], args.sync_blocks)
            for offset, state_sync in ((1, False), (2, True)):
                port = args.base_port + args.validators + offset
                print(json.dumps(asyncio.run(_sync_speed(urls, directory, port, state_sync))), flush=True)


def _wait_for_height(url: str, height: int) -> None:
    import urllib.request
    while True:
        with urllib.request.urlopen(url + "/status", timeout=5) as response:
            if json.loads(response.read())["height"] >= height:
                return
        time.sleep(0.5)


@contextlib.contextmanager
def _devnet(directory: pathlib.Path, args, senders: int, block_interval_ms: int | None):
    command = [*DEVNET, "up", "--validators", str(args.validators), "--dir", str(directory),
               "--base-port", str(args.base_port), "--accounts", str(senders), "--no-mine"]
    if block_interval_ms is not None:
        command += ["--block-interval-ms", str(block_interval_ms)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    try:
        nodes = json.loads((directory / "devnet.json").read_text())["nodes"]
        time.sleep(3)
        yield directory, [n["url"] for n in nodes]
    finally:
        subprocess.run([*DEVNET, "down", "--dir", str(directory)], stdout=subprocess.DEVNULL)

if __name__ == "__main__":
    main()
