"""What is measured on a devnet while it is flooded (scripts/floods.py): each node's
memory and the consensus messages it holds, and how an honest user fares.

    node_rss_mb         VmRSS of a node's process and its children (its compute worker)
    consensus_messages  the node's uponode_consensus_messages gauge, from GET /metrics
    NodeWatch           samples both for every node, once a second
    HonestProbe         one funded transfer a second, round robin over the nodes, and
                        a poller that times each one from submission to the finalized
                        block that holds it (as scripts/bench_devnet.py does), and counts
                        the work commitments those blocks carry

Both keep timestamped records (time.monotonic()); a caller asks for a window of them.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import pathlib
import statistics
import time

import aiohttp

from node.storage.home import read_key_file
from scripts.bench_devnet import percentile
from node.types.crypto import SigningKey
from node.types.transactions import Transfer, sign_tx

GAUGE = "uponode_consensus_messages"
POLL_S = 0.1  # how often the probe looks for a new block: the resolution of its latencies
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc/<pid>/stat."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        # the command name, in parentheses, may hold spaces: the fields follow its last ")"
        parent = int(text[text.rindex(")") + 2:].split()[1])
        children[parent].append(int(stat.parent.name))
    return children


def vm_rss_kb(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone, or a zombie


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(resident kB of pid, and of pid with all its descendants), each process read once."""
    children, own = _children(), vm_rss_kb(pid)
    total, todo = own, list(children.get(pid, []))
    while todo:
        current = todo.pop()
        total += vm_rss_kb(current)
        todo += children.get(current, [])
    return own, total


def node_rss_mb(pid: int) -> float:
    """Resident memory of pid and all its descendants, in MiB."""
    return tree_rss_kb(pid)[1] / 1024


async def consensus_messages(session: aiohttp.ClientSession, url: str) -> int | None:
    """The node's consensus-messages gauge; None if it does not answer in time."""
    try:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    for line in text.splitlines():
        if line.startswith(GAUGE + " "):
            return int(float(line.split()[1]))
    return None


@dataclasses.dataclass(frozen=True)
class WatchedNode:
    name: str
    url: str
    pid: int


class NodeWatch:
    """Samples every node's RSS and consensus-messages gauge once a second."""

    def __init__(self, nodes: list[WatchedNode]):
        self.nodes = nodes
        self.samples: list[tuple[float, str, float, int | None]] = []  # (t, node, rss MiB, gauge)

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while not stop.is_set():
                gauges = await asyncio.gather(*[consensus_messages(session, n.url) for n in self.nodes])
                now = time.monotonic()
                for node, gauge in zip(self.nodes, gauges):
                    self.samples.append((now, node.name, node_rss_mb(node.pid), gauge))
                await _sleep_unless(stop, 1.0)

    def window(self, start: float, end: float) -> dict:
        """Per node, the largest RSS (MiB) and gauge sampled in [start, end]."""
        rss: dict[str, float] = {}
        gauge: dict[str, int] = {}
        for t, name, mb, held in self.samples:
            if start <= t <= end:
                rss[name] = max(rss.get(name, 0.0), mb)
                if held is not None:
                    gauge[name] = max(gauge.get(name, 0), held)
        return {"rss_mb_max": {n: round(mb, 1) for n, mb in rss.items()},
                "consensus_messages_max": gauge}


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


@dataclasses.dataclass
class _Account:
    key: SigningKey
    nonce: int | None = None  # None: ask a node before the next transfer


class HonestProbe:
    """An honest user of the chain: `per_s` funded transfers a second, each from the next
    of `accounts` in turn and to the next node in turn; a transfer a node refuses is not
    retried (its nonce is asked for again), one rate-limited (429) is, after Retry-After."""

    def __init__(self, urls: list[str], observer: str, keys: list[SigningKey], chain_id: str,
                 fee: int, per_s: float = 1.0):
        self.urls = urls
        self.observer = observer  # the node whose finalized blocks are read
        self.accounts = [_Account(k) for k in keys]
        self.chain_id = chain_id
        self.fee = fee
        self.per_s = per_s
        self.submitted: dict[str, float] = {}  # tx hash -> when the POST a node accepted was sent
        self.included: dict[str, float] = {}  # tx hash -> when its block was seen finalized
        self.refused: list[tuple[float, str]] = []  # (t, reason)
        self.rate_limited: list[float] = []
        self.blocks: list[tuple[float, int, int]] = []  # (t seen, height, work commitments)

    @classmethod
    def for_devnet(cls, directory: pathlib.Path, urls: list[str], observer: str, accounts: int,
                   chain_id: str, fee: int) -> "HonestProbe":
        keys = [read_key_file(directory / "keys" / f"account-{i}.json") for i in range(accounts)]
        return cls(urls, observer, keys, chain_id, fee)

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            await asyncio.gather(self._submit_loop(session, stop), self._poll_loop(session, stop))

    async def _submit_loop(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        sends: set[asyncio.Task] = set()
        i = 0
        while not stop.is_set():
            # one at a time per account: its next nonce depends on this one's fate
            account = self.accounts[i % len(self.accounts)]
            url = self.urls[i % len(self.urls)]
            i += 1
            task = asyncio.create_task(self._transfer(session, account, url, stop))
            sends.add(task)
            task.add_done_callback(sends.discard)
            await _sleep_unless(stop, 1 / self.per_s)
        await asyncio.gather(*sends, return_exceptions=True)

    async def _transfer(self, session: aiohttp.ClientSession, account: _Account, url: str,
                        stop: asyncio.Event) -> None:
        address = account.key.public_key.hex()
        try:
            if account.nonce is None:
                async with session.get(f"{url}/accounts/{address}") as response:
                    account.nonce = (await response.json())["pending_nonce"]
            tx = sign_tx(account.key, self.chain_id, account.nonce, Transfer(account.key.public_key, 1),
                         self.fee)
            while True:
                posted = time.monotonic()
                async with session.post(url + "/txs", data=tx.encode().hex()) as response:
                    reply = await response.json(content_type=None)
                if response.status != 429 or stop.is_set():
                    break
                self.rate_limited.append(posted)
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            self.refused.append((time.monotonic(), f"error {type(exc).__name__}"))
            account.nonce = None
            return
        if response.status == 200:
            self.submitted[tx.hash.hex()] = posted
            account.nonce += 1
        else:
            reason = reply.get("reason", "") if isinstance(reply, dict) else ""
            self.refused.append((time.monotonic(), f"{response.status} {reason}".strip()))
            account.nonce = None

    async def _poll_loop(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        height = None
        while not stop.is_set():
            try:
                async with session.get(self.observer + "/status") as response:
                    head = (await response.json())["height"]
                height = head if height is None else height
                while height < head:
                    async with session.get(f"{self.observer}/blocks/{height + 1}") as response:
                        block = await response.json()
                    height += 1
                    now = time.monotonic()
                    for tx in block["txs"]:
                        self.included.setdefault(tx["hash"], now)
                    self.blocks.append((now, height,
                                        sum(tx["kind"] == "work_commitment" for tx in block["txs"])))
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                pass  # a busy observer: try again
            await _sleep_unless(stop, POLL_S)

    def heights(self, start: float, end: float) -> range:
        """The heights of the blocks seen finalized in [start, end]."""
        seen = [height for t, height, _ in self.blocks if start <= t <= end]
        return range(min(seen), max(seen) + 1) if seen else range(0)

    def pending_from(self, start: float, end: float) -> int:
        """Transfers submitted in [start, end] not yet seen finalized."""
        return sum(start <= t <= end and h not in self.included for h, t in self.submitted.items())

    def window(self, start: float, end: float) -> dict:
        """How the transfers submitted in [start, end] fared, and the blocks seen then."""
        latencies = [self.included[h] - t for h, t in self.submitted.items()
                     if start <= t <= end and h in self.included]
        blocks = [b for b in self.blocks if start <= b[0] <= end]
        return {
            "finality_p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "finality_p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
            "blocks_finalized": len(blocks),
            "honest_submitted": sum(start <= t <= end for t in self.submitted.values()),
            "honest_landed": len(latencies),
            "honest_refused": dict(collections.Counter(r for t, r in self.refused if start <= t <= end)),
            "honest_rate_limited": sum(start <= t <= end for t in self.rate_limited),
            "work_commitments": sum(b[2] for b in blocks),
        }


async def units_by_round(session: aiohttp.ClientSession, url: str, rounds: range,
                         heights: range) -> dict[str, int]:
    """Work units (landed WorkCommitments) of each of rounds whose commit deadline is one
    of heights, from GET /rounds/{r}: so each round counts once, in the window where its
    units stopped landing, with its final count."""
    counts = {}
    for round_ in rounds:
        try:
            async with session.get(f"{url}/rounds/{round_}") as response:
                view = await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            view = None  # left out: the report names the rounds it saw
        if view is not None and view["commit_deadline"] in heights:
            counts[str(round_)] = len(view["units"])
    return counts
