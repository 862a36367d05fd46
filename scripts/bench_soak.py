"""Soak benchmark: a mining devnet under a steady transfer load, measured at every
closed training round, to show whether disk, memory, block interval or finality drift.

    python scripts/bench_soak.py [--minutes 60] [--tps 2] [--accounts K] [--skip-rounds N]
                                 [--base-port 32300] [--dir DIR]

Starts a devnet (scripts/devnet.py up --validators 4 --auditors 1) with K funded
accounts and an honest user (scripts/flood_watch.py's HonestProbe) that sends --tps
transfers a second, round robin over the validators, and times each from its
submission to the moment the finalized block holding it is seen.  At each round close
it prints one JSON line, read from the public HTTP API and the filesystem only:

    round, close_height, close_unix_s   the round and its closing block (header time)
    elapsed_s                           since the load started, when the close was seen
    round_s                             header time of the close minus the previous close's
    eval_loss, units, accepted_units    GET /rounds/{r}
    block_interval_mean_s, _p95_s       differences of consecutive header times from the
                                        previous close to this one (GET /headers)
    close_interval_s                    the close's header time minus its predecessor's
    finality_p50_s, _p95_s              the load's transfers in the round's blocks
    transfers_landed, transfers_refused (refused: answered with an error in the round)
    nodes: {name: {...}}                per node of DIR/devnet.json (the auditor too):
        home_bytes, blobs_bytes, data_bytes   bytes of the files in its home, in blobs/
                                              and in data/ (LevelDB), walked
        rss_mb, node_rss_mb, children_rss_mb  VmRSS of its process and its descendants
                                              (the compute worker), and the two parts
        close_s                         between its node.log's 'finalized height' lines
                                        for the close's predecessor and the close

        state_entries                   its chain state's entries (GET /metrics), null for
                                        the auditor, which keeps no state
At the end
(--minutes of load, Ctrl-C or SIGTERM) one summary line: the least-squares slopes, per
round and per hour, of each node's blobs, data, RSS and state entries over the rounds after the first
--skip-rounds (default: the genesis's retention window in rounds if it has one, else
4), and the block interval and finality over the same rounds.  Progress goes to
stderr, one line per round.  Stops the devnet whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import math
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Callable, Sequence

import aiohttp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.rpc.scrape import bytes_under  # noqa: E402
from node.storage.home import BLOBS_DIR, DATA_DIR, read_key_file  # noqa: E402
from scripts.bench_devnet import DEVNET, percentile  # noqa: E402
from scripts.flood_watch import HonestProbe, tree_rss_kb  # noqa: E402

VALIDATORS, AUDITORS = 4, 1
DEFAULT_SKIP_ROUNDS = 4
RETENTION_KEY = "retention_rounds"  # consensus.<key>, once the genesis has a retention window
STATE_FILE = "devnet.json"
POLL_S = 1.0
PROBE_LAG_S = 10  # how long a round's record waits for the probe to see its last block
STALL_S = 300  # no new block for this long: the devnet is broken, stop
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
GET_TRIES = 3
# logging's default asctime, as node/cmd/service.py configures it
_FINALIZED = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?finalized height (\d+) ")
_SUMMARY_FIELDS = ("blobs_bytes", "data_bytes", "rss_mb", "state_entries")


# -- pure computation (tests/unit/test_bench_soak.py)

def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys against xs; None without two distinct xs."""
    n = len(xs)
    if n < 2:
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx


def default_skip_rounds(genesis: dict) -> int:
    """Warm-up rounds left out of the slopes: the retention window, while disk grows to it."""
    window = genesis.get("consensus", {}).get(RETENTION_KEY)
    return window if isinstance(window, int) and window >= 0 else DEFAULT_SKIP_ROUNDS


def parse_finalized(data: bytes) -> dict[int, float]:
    """Height -> local time (epoch seconds) of each 'finalized height H' line in data."""
    times = {}
    for line in data.splitlines():
        match = _FINALIZED.match(line)
        if match:
            stamp = datetime.datetime.strptime(match[1].decode(), "%Y-%m-%d %H:%M:%S,%f")
            times[int(match[2])] = stamp.timestamp()
    return times


def landed_latencies(submitted: dict[str, float], included: dict[str, float],
                     blocks: Sequence[tuple[float, int, int]], heights: range) -> list[float]:
    """Finality (s) of the submitted transfers whose block is at one of heights.

    HonestProbe stamps every transaction of a block with the time it saw that block and
    records (that time, height, ...) in blocks, so the stamp names the block."""
    seen = {t for t, height, _ in blocks if height in heights}
    return [included[h] - t for h, t in submitted.items() if included.get(h) in seen]


@dataclasses.dataclass
class NodeSample:
    home_bytes: int
    blobs_bytes: int
    data_bytes: int
    rss_kb: int  # the node process alone
    tree_rss_kb: int  # with its descendants
    state_entries: int | None  # None for a node without a state (the light auditor)
    finalized: dict[int, float]  # height -> when its log says it finalized it


@dataclasses.dataclass
class RoundSample:
    """What was read at one round's close, before it is summed up."""
    round: int
    close_height: int
    header_times_ms: list[int]  # time_ms of the heights from the previous close (if any) to this one
    view: dict  # GET /rounds/{round}
    elapsed_s: float
    nodes: dict[str, NodeSample]
    latencies_s: list[float]
    refused: int


def _round3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean, p95) of values; (None, None) if there are none."""
    if not values:
        return None, None
    return _round3(statistics.fmean(values)), _round3(percentile(list(values), 0.95))


def block_intervals(sample: RoundSample) -> list[float]:
    times = sample.header_times_ms
    return [(b - a) / 1000 for a, b in zip(times, times[1:])]


def round_record(sample: RoundSample, round_blocks: int) -> dict:
    """The JSON line for one closed round."""
    times = sample.header_times_ms
    interval_mean, interval_p95 = _spread(block_intervals(sample))
    latencies = sample.latencies_s
    nodes = {}
    for name, node in sample.nodes.items():
        close, before = (node.finalized.get(sample.close_height + d) for d in (0, -1))
        nodes[name] = {
            "home_bytes": node.home_bytes, "blobs_bytes": node.blobs_bytes,
            "data_bytes": node.data_bytes,
            "rss_mb": round(node.tree_rss_kb / 1024, 1), "node_rss_mb": round(node.rss_kb / 1024, 1),
            "children_rss_mb": round(max(0, node.tree_rss_kb - node.rss_kb) / 1024, 1),
            "state_entries": node.state_entries,
            "close_s": _round3(close - before) if close is not None and before is not None else None}
    return {
        "round": sample.round, "close_height": sample.close_height,
        "close_unix_s": times[-1] / 1000, "elapsed_s": round(sample.elapsed_s, 1),
        # the list starts at the previous close only when there is one (not for round 0)
        "round_s": _round3((times[-1] - times[0]) / 1000) if len(times) > round_blocks else None,
        "eval_loss": sample.view.get("eval_loss"), "units": len(sample.view.get("units", [])),
        "accepted_units": sum(u["status"] == "accepted" for u in sample.view.get("units", [])),
        "block_interval_mean_s": interval_mean, "block_interval_p95_s": interval_p95,
        "close_interval_s": _round3((times[-1] - times[-2]) / 1000) if len(times) > 1 else None,
        "finality_p50_s": _round3(statistics.median(latencies)) if latencies else None,
        "finality_p95_s": _round3(percentile(latencies, 0.95)) if latencies else None,
        "transfers_landed": len(latencies), "transfers_refused": sample.refused,
        "nodes": nodes}


def summarize(records: Sequence[dict], samples: Sequence[RoundSample], skip_rounds: int) -> dict:
    """The summary line over the records (and their raw samples) after the first skip_rounds."""
    used = [(r, s) for r, s in zip(records, samples) if r["round"] >= records[0]["round"] + skip_rounds] \
        if records else []
    rounds = [r["round"] for r, _ in used]
    hours = [r["close_unix_s"] / 3600 for r, _ in used]
    slopes = {}
    for name in (used[0][0]["nodes"] if used else {}):
        per_node = {}
        for field in _SUMMARY_FIELDS:
            points = [(x, h, r["nodes"][name][field]) for x, h, (r, _) in zip(rounds, hours, used)
                      if r["nodes"][name][field] is not None]
            per_node[f"{field}_per_round"] = _round3(slope([x for x, _, _ in points], [y for _, _, y in points]))
            per_node[f"{field}_per_hour"] = _round3(slope([h for _, h, _ in points], [y for _, _, y in points]))
        slopes[name] = per_node
    intervals = [i for _, s in used for i in block_intervals(s)]
    latencies = [t for _, s in used for t in s.latencies_s]
    round_s = [r["round_s"] for r, _ in used if r["round_s"] is not None]
    interval_mean, interval_p95 = _spread(intervals)
    return {
        "summary": True, "rounds_recorded": len(records), "skip_rounds": skip_rounds,
        "rounds_used": rounds, "slopes": slopes,
        "round_s_mean": _round3(statistics.fmean(round_s)) if round_s else None,
        "block_interval_mean_s": interval_mean, "block_interval_p95_s": interval_p95,
        "finality_p50_s": _round3(statistics.median(latencies)) if latencies else None,
        "finality_p95_s": _round3(percentile(latencies, 0.95)) if latencies else None,
        "transfers_landed": len(latencies), "transfers_refused": sum(s.refused for _, s in used)}


# -- reading the filesystem and /proc

class LogTail:
    """The 'finalized height' times of a node's log, read on from where it was last read."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.offset = 0
        self.partial = b""  # a last line not yet ended
        self.finalized: dict[int, float] = {}

    def read(self) -> dict[int, float]:
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                data = log.read()
        except OSError:
            return self.finalized
        self.offset += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        self.finalized.update(parse_finalized(data[:cut]))
        return self.finalized


def sample_node(node: dict, log: LogTail, close_height: int) -> NodeSample:
    home = pathlib.Path(node["home"])
    own_kb, tree_kb = tree_rss_kb(node["pid"])
    finalized = log.read()
    # only what the record needs: a soak keeps every round's sample until its summary
    near = {h: finalized[h] for h in (close_height - 1, close_height) if h in finalized}
    return NodeSample(home_bytes=bytes_under(home), blobs_bytes=bytes_under(home / BLOBS_DIR),
                      data_bytes=bytes_under(home / DATA_DIR), rss_kb=own_kb, tree_rss_kb=tree_kb,
                      state_entries=state_entries(node["url"]) if node["url"] else None, finalized=near)


def state_entries(url: str) -> int | None:
    """uponode_state_entries from the node's /metrics; None if it does not answer."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as reply:
            found = re.search(r"^uponode_state_entries (\d+)$", reply.read().decode(), re.M)
    except (OSError, ValueError):
        return None
    return int(found.group(1)) if found else None


# -- the run

class _Stopper:
    """SIGINT/SIGTERM: while rounds are measured, end the measurement (the summary still
    prints); otherwise, or on a second signal, raise KeyboardInterrupt so that the
    `finally`s stop the devnet."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self.signalled = False

    def __call__(self, signum: int, frame) -> None:
        if self.loop is None or self.event is None or self.event.is_set():
            raise KeyboardInterrupt
        self.signalled = True
        self.loop.call_soon_threadsafe(self.event.set)


async def _get(session: aiohttp.ClientSession, url: str) -> dict:
    for attempt in range(GET_TRIES):
        try:
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.json()
        except (aiohttp.ClientError, TimeoutError):
            if attempt == GET_TRIES - 1:
                raise
            await asyncio.sleep(1)  # a node busy closing a round: ask again
    raise AssertionError("unreachable")


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def _sample_round(session: aiohttp.ClientSession, observer: str, round_: int,
                        round_blocks: int, nodes: list[dict], logs: dict[str, LogTail],
                        probe: HonestProbe | None, window: tuple[float, float],
                        started: float) -> RoundSample:
    close = (round_ + 1) * round_blocks
    seen = time.monotonic()
    first = max(1, round_ * round_blocks)  # the previous close, whose time starts the round
    headers = (await _get(session, f"{observer}/headers?from={first}&to={close}"))["headers"]
    view = await _get(session, f"{observer}/rounds/{round_}")
    if probe is not None:
        deadline = time.monotonic() + PROBE_LAG_S
        while (not probe.blocks or probe.blocks[-1][1] < close) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    # walking the homes may take a while: off the loop, so the probe keeps its clock
    samples = await asyncio.to_thread(
        lambda: {n["name"]: sample_node(n, logs[n["name"]], close) for n in nodes})
    heights = range(round_ * round_blocks + 1, close + 1)
    latencies = [] if probe is None else landed_latencies(probe.submitted, probe.included,
                                                          probe.blocks, heights)
    refused = 0 if probe is None else sum(window[0] < t <= window[1] for t, _ in probe.refused)
    return RoundSample(round_, close, [h["time_ms"] for h in headers], view, seen - started,
                       samples, latencies, refused)


async def soak(directory: pathlib.Path, args: argparse.Namespace, stopper: _Stopper,
               report: Callable[[dict], None]) -> list[RoundSample]:
    """Run the load for args.minutes (or until stopper fires); report each round's record."""
    genesis = json.loads((directory / "genesis.json").read_text())
    round_blocks = genesis["consensus"]["round_blocks"]
    nodes = json.loads((directory / STATE_FILE).read_text())["nodes"]
    urls = [n["url"] for n in nodes if n["url"]]
    observer = urls[0]
    logs = {n["name"]: LogTail(pathlib.Path(n["home"]) / "node.log") for n in nodes}
    stop = asyncio.Event()
    stopper.loop, stopper.event = asyncio.get_running_loop(), stop
    probe = None
    stop_probe = asyncio.Event()
    probe_task = None
    if args.tps > 0:
        keys = [read_key_file(directory / "keys" / f"account-{i}.json") for i in range(args.accounts)]
        probe = HonestProbe(urls, observer, keys, genesis["chain_id"],
                            genesis["economics"]["min_tx_fee"], per_s=args.tps)
        probe_task = asyncio.create_task(probe.run(stop_probe))
    samples: list[RoundSample] = []
    try:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            started = time.monotonic()
            deadline = started + args.minutes * 60
            head = (await _get(session, f"{observer}/status"))["height"]
            next_round = head // round_blocks  # the first round whose close is still ahead
            moved, last_close_seen = started, started
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    height = (await _get(session, f"{observer}/status"))["height"]
                except (aiohttp.ClientError, TimeoutError):
                    height = head
                if height > head:
                    head, moved = height, time.monotonic()
                elif time.monotonic() - moved > STALL_S:
                    raise RuntimeError(f"no block finalized at {observer} for {STALL_S} s "
                                       f"(height {head}); see {directory}/node-*/node.log")
                while (next_round + 1) * round_blocks <= head:
                    now = time.monotonic()
                    sample = await _sample_round(session, observer, next_round, round_blocks, nodes,
                                                 logs, probe, (last_close_seen, now), started)
                    samples.append(sample)
                    report(round_record(sample, round_blocks))
                    last_close_seen = now
                    next_round += 1
                await _sleep_unless(stop, POLL_S)
    finally:
        stop_probe.set()
        if probe_task is not None:
            await asyncio.gather(probe_task, return_exceptions=True)
    return samples


def _ignore_signals() -> None:
    """From here on nothing may interrupt the stopping of the nodes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _run_devnet(command: list[str]) -> None:
    """Run a devnet.py command to its end; a signal meanwhile is passed on to it (so that
    `up` stops cleanly, its nodes listed in devnet.json) and raised once it is done."""
    # a session of its own: a terminal's Ctrl-C reaches it only through us
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.stderr,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, errors = process.communicate()
    except BaseException:
        _ignore_signals()
        process.send_signal(signal.SIGINT)
        process.communicate()  # its traceback from the SIGINT says nothing new
        raise
    if process.returncode != 0:
        last = (errors.strip().splitlines() or [f"exit {process.returncode}"])[-1]
        raise SystemExit(f"bench_soak: error: {last}")


def _down(directory: pathlib.Path) -> None:
    if not (directory / STATE_FILE).exists():
        return
    _ignore_signals()
    subprocess.run([*DEVNET, "down", "--dir", str(directory)], stdin=subprocess.DEVNULL,
                   stdout=sys.stderr, start_new_session=True, timeout=120)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, low: float, strict: bool) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(prog="bench_soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=_number(float, 0, strict=True), default=60.0,
                        help="how long the load runs, after the devnet is up")
    parser.add_argument("--tps", type=_number(float, 0, strict=False), default=2.0,
                        help="transfers a second (0: no load)")
    parser.add_argument("--accounts", type=_number(int, 1, strict=False),
                        help="funded sender accounts (default: 8 per transfer a second, at least 16)")
    parser.add_argument("--skip-rounds", type=_number(int, 0, strict=False),
                        help="warm-up rounds left out of the summary (default: the genesis's "
                             f"retention window, else {DEFAULT_SKIP_ROUNDS})")
    parser.add_argument("--base-port", type=_number(int, 1024, strict=False), default=32300)
    parser.add_argument("--dir", type=pathlib.Path,
                        help="devnet directory to keep (logs, homes); default: a temporary one")
    args = parser.parse_args(argv)
    if args.base_port + VALIDATORS > 65536:
        parser.error(f"argument --base-port: {args.base_port} leaves no room for {VALIDATORS} ports")
    if args.dir is not None and (args.dir / STATE_FILE).exists():
        parser.error(f"argument --dir: {args.dir} already holds a devnet")
    if args.accounts is None:
        # one transfer in flight per account at a time: its next nonce depends on it
        args.accounts = max(16, math.ceil(8 * args.tps))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("bench_soak: interrupted; stopped what it had started", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    stopper = _Stopper()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopper)

    def report(record: dict) -> None:
        print(json.dumps(record), flush=True)
        busiest = max(record["nodes"].items(), key=lambda item: item[1]["rss_mb"])
        print(f"round {record['round']} closed at height {record['close_height']} "
              f"({record['elapsed_s']:.0f} s): eval_loss {record['eval_loss']}, "
              f"{record['accepted_units']}/{record['units']} units accepted, block interval "
              f"{record['block_interval_mean_s']} s, finality p50 {record['finality_p50_s']} s "
              f"({record['transfers_landed']} transfers), most RSS {busiest[0]} "
              f"{busiest[1]['rss_mb']} MiB", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        directory = args.dir or pathlib.Path(tmp) / "devnet"
        try:
            _run_devnet([*DEVNET, "up", "--validators", str(VALIDATORS), "--auditors", str(AUDITORS),
                         "--accounts", str(args.accounts), "--dir", str(directory),
                         "--base-port", str(args.base_port)])
            genesis = json.loads((directory / "genesis.json").read_text())
            skip = args.skip_rounds if args.skip_rounds is not None else default_skip_rounds(genesis)
            print(f"bench_soak: devnet up in {directory}; {args.tps:g} transfers/s from "
                  f"{args.accounts} accounts for {args.minutes:g} min", file=sys.stderr, flush=True)
            try:
                samples = asyncio.run(soak(directory, args, stopper, report))
            finally:
                stopper.loop = stopper.event = None
            records = [round_record(s, genesis["consensus"]["round_blocks"]) for s in samples]
            print(json.dumps(summarize(records, samples, skip)), flush=True)
        finally:
            _down(directory)
    return 130 if stopper.signalled else 0


if __name__ == "__main__":
    sys.exit(main())
