"""Run one e2e manifest: python -m tests.e2e.run MANIFEST [--dir DIR] [--keep]

Lays the devnet out in DIR (a new temporary directory by default), starts it, injects
the manifest's perturbations while polling every validator's API and sending the
transfer load, waits after the last heal until a training round has closed on every
validator, then checks the invariants through the API.  Progress goes to stderr.  On
success it prints one JSON summary line and exits 0; otherwise one line per broken
invariant (which, at which height, on which node) and exits 1.  A bad manifest or a
devnet that cannot start exits 2.  The run directory (every node's home and node.log)
is removed after a success unless --keep is given, and always kept after a failure.

Clock skew is not among the perturbations: a node reads block times from the system
clock and the product has no hook to offset one node's clock, and faking the clock
from outside (e.g. libfaketime) would not be the product's own behaviour.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import pathlib
import shutil
import signal
import sys
import tempfile
from typing import Callable, Sequence

import aiohttp

from node.state.retention import first_kept_round
from node.types.blocks import Block
from node.types.genesis import ConsensusConfig

from tests.e2e.api import NodeApi
from tests.e2e.devnet import Devnet, DevnetError
from tests.e2e.invariants import (AUDITED, BLOCK_HASH, DEVNET, HEIGHT_MONOTONIC, LIVENESS,
                                  ROUND_CLOSES, SUPPLY, UNITS_ACCEPTED, ChainObserver, Failure,
                                  burned_fees, check_audits, check_liveness, check_round_closes,
                                  check_supply, emitted)
from tests.e2e.load import TransferLoad
from tests.e2e.manifest import Manifest, ManifestError, load_manifest
from tests.e2e.perturb import Fired, PerturbationError, Perturber, Topology
from tests.e2e.block_log import BlockLog
from tests.e2e.poller import Poller, finality_p50

READY_TIMEOUT_S = 120.0  # seven processes start on two cores
SENDERS = 4  # funded accounts that send the transfer load
CONSISTENT_READ_TRIES = 20
ANSWERS = "answers"  # every validator answers its API at the end of the run
CHECKED = [BLOCK_HASH, HEIGHT_MONOTONIC, LIVENESS, ROUND_CLOSES, SUPPLY, AUDITED, ANSWERS]


@dataclasses.dataclass
class RunResult:
    failures: list[Failure]
    summary: dict


def _stderr(name: str) -> Callable[[str], None]:
    return lambda message: print(f"e2e {name}: {message}", file=sys.stderr, flush=True)


async def _wait_ready(devnet: Devnet, apis: Sequence[NodeApi]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    for node, api in zip(devnet.validators, apis):
        while await api.status() is None:
            if not node.running():
                raise DevnetError(f"{node.name} exited; see {node.log_path}")
            if loop.time() > deadline:
                raise DevnetError(f"{node.name} did not answer at {node.url} within "
                                  f"{READY_TIMEOUT_S:g} s; see {node.log_path}")
            await asyncio.sleep(0.2)
    for auditor in devnet.auditors:
        if not auditor.running():
            raise DevnetError(f"{auditor.name} exited; see {auditor.log_path}")


async def _closed_rounds(api: NodeApi, upto_height: int, consensus: ConsensusConfig) -> list[dict] | None:
    """/rounds/{r} of every round closed at or below upto_height that the state still keeps;
    None if the node stops answering."""
    status = await api.status()
    if status is None:
        return None
    views = []
    first = round_ = first_kept_round(consensus, status["height"])
    while True:
        view = await api.round(round_)
        if view is None and round_ == first:  # forgotten by a close since the status read
            round_ += 1
            continue
        if view is None:
            return None
        if view["close_height"] > upto_height:
            return views
        views.append(view)
        round_ += 1


async def _consistent_holdings(api: NodeApi, addresses: Sequence[str]) -> tuple[int, int] | None:
    """(height, balances + bonds of addresses) read between two equal heights: every block
    moves fees, so the sum is only meaningful at one height."""
    for _ in range(CONSISTENT_READ_TRIES):
        before = await api.status()
        accounts = await asyncio.gather(*(api.account(a) for a in addresses))
        after = await api.status()
        if before and after and before["height"] == after["height"] and all(accounts):
            return before["height"], sum(a["balance"] + a["bond"] for a in accounts)
    return None


async def _check_supply(api: NodeApi, name: str, devnet: Devnet,
                        block_log: BlockLog) -> tuple[list[Failure], int]:
    """The supply invariant on one node, with the blocks read through the run (their hashes
    are the same on every node: the observer checks it); also returns how many
    transactions the chain holds."""
    genesis = devnet.genesis
    snapshot = await _consistent_holdings(api, [a.address.hex() for a in genesis.accounts])
    if snapshot is None:
        return [Failure(ANSWERS, -1, name, "no two /status reads at one height around /accounts")], 0
    height, holdings = snapshot
    if not await block_log.read_to(height):
        return [Failure(ANSWERS, height, name, "no validator answered /blocks")], 0
    blocks = block_log.blocks[:height]
    genesis_supply = sum(a.balance + a.bond for a in genesis.accounts)
    burned = burned_fees(blocks, genesis.economics.fee_burn_bps)
    closes = [close for block in blocks for close in Block.decode(bytes.fromhex(block["raw"])).close]
    return (check_supply(name, height, holdings, genesis_supply, emitted(closes), burned),
            sum(len(b["txs"]) for b in blocks))


async def _cut_proposer_outcome(api: NodeApi, height: int, devnet: Devnet) -> dict | None:
    """How the height a cut proposer was to propose was decided: in which round, by whom."""
    block = await api.block(height)
    if block is None:
        return None
    proposer = next((node.name for node in devnet.validators
                     if node.public_key == block["header"]["proposer"]), "?")
    return {"height": height, "round": block["header"]["round"], "proposer": proposer}


class _Run:
    """One manifest's run on a started devnet: perturb, settle, check, summarise."""

    def __init__(self, manifest: Manifest, devnet: Devnet, session: aiohttp.ClientSession,
                 progress: Callable[[str], None]):
        self.manifest = manifest
        self.spec = manifest.devnet
        self.devnet = devnet
        self.progress = progress
        self.apis = [NodeApi(session, node.url) for node in devnet.validators]
        self.names = [node.name for node in devnet.validators]
        self.loop = asyncio.get_running_loop()
        self.start = 0.0
        self.observer = ChainObserver()
        self.poller = Poller(dict(zip(self.names, self.apis)), self.observer, self.clock)
        self.block_log = BlockLog(self.apis, lambda: self.poller.highest)
        self.topology = Topology(devnet, [v.power for v in devnet.genesis.validators], self.clock)
        self.load = TransferLoad(self.apis, lambda n: not self.topology.is_down(n), devnet.senders,
                                 devnet.genesis.chain_id, devnet.genesis.economics.min_tx_fee,
                                 self.spec.transfers_per_s) if self.spec.transfers_per_s else None
        self.failures: list[Failure] = []

    def clock(self) -> float:
        """Seconds since every validator answered its API."""
        return self.loop.time() - self.start

    def height_of(self, name: str) -> int:
        return self.poller.latest.get(name, {}).get("height", -1)

    async def run(self) -> dict:
        await _wait_ready(self.devnet, self.apis)
        self.start = self.loop.time()
        self.progress(f"{len(self.apis)} validators and {len(self.devnet.auditors)} auditors "
                      f"answering; homes and logs in {self.devnet.directory}")
        background = [asyncio.create_task(self.poller.run()), asyncio.create_task(self.block_log.run())]
        if self.load is not None:
            background.append(asyncio.create_task(self.load.run()))
        try:
            fired = await self._perturb()
            healed_s, heal_height = self.clock(), self.poller.highest
            close = await self._settle()
        finally:
            for task in background:
                task.cancel()
            outcomes = await asyncio.gather(*background, return_exceptions=True)
        # a poller or load that died of a bug must not pass for a quiet chain
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        end = self.clock()
        self.progress(f"+{end:.1f} s: checking the invariants")
        facts = await self._check(end)
        first_fired = min((f.fired_s for f in fired), default=healed_s)
        new_heights = self.poller.new_heights
        return {
            "manifest": self.manifest.name,
            **facts,
            "round_closed_after_heal": {"healed_height": heal_height, "close_height": close},
            "transfers_taken": self.load.taken if self.load else 0,
            "finality_p50_s": {"before": finality_p50(new_heights, 0.0, first_fired),
                               "during": finality_p50(new_heights, first_fired, healed_s),
                               "after": finality_p50(new_heights, healed_s, end)},
            "perturbations": [await self._describe(f) for f in fired],
            "invariants": CHECKED + ([UNITS_ACCEPTED] if self.spec.mine else []),
        }

    async def _perturb(self) -> list[Fired]:
        perturber = Perturber(self.devnet, self.topology, self.apis, self.poller, self.start,
                              self.spec.settle_s, self.progress)
        outcomes = await asyncio.gather(*(perturber.run(p) for p in self.manifest.perturbations),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, PerturbationError):
                self.failures.append(Failure(LIVENESS, self.poller.highest, DEVNET, str(outcome)))
            elif isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if isinstance(o, Fired)]

    async def _round_under_way(self) -> tuple[int, int] | None:
        """(round, close height) of the round the highest validator is in, from its API."""
        leader = max(range(len(self.apis)), key=lambda n: self.height_of(self.names[n]))
        status = await self.apis[leader].status()
        view = await self.apis[leader].round(status["round"]) if status else None
        return (view["round"], view["close_height"]) if view else None

    async def _settle(self) -> int | None:
        """Wait until the round under way at the last heal has closed on every validator;
        returns its close height (None if no validator said which round was under way)."""
        deadline = self.loop.time() + self.spec.settle_s
        target = None
        while self.loop.time() < deadline:
            if target is None:
                target = await self._round_under_way()
                if target is not None:
                    self.progress(f"waiting for round {target[0]} to close (height {target[1]}) "
                                  f"on every validator")
            elif all(self.height_of(name) >= target[1] for name in self.names):
                return target[1]
            await asyncio.sleep(0.25)
        if target is None:
            self.failures.append(Failure(ROUND_CLOSES, self.poller.highest, DEVNET,
                                         "no validator's API said which round was under way"))
            return None
        heights = {name: self.height_of(name) for name in self.names}
        self.failures += check_round_closes(*target, heights, self.spec.settle_s)
        return target[1]

    async def _check(self, end: float) -> dict:
        """Every invariant through the API; returns the facts the summary reports."""
        heights = {}
        for name, api in zip(self.names, self.apis):
            status = await api.status()
            first = await api.first_block() if status and status["height"] else 1
            headers = await api.headers(first, status["height"]) if status and first else None
            if headers is None:
                self.failures.append(Failure(ANSWERS, self.height_of(name), name,
                                             "GET /status or /headers did not answer at the end"))
                continue
            self.observer.observe_head(name, status["height"], status["head_hash"])
            self.observer.observe_headers(name, headers)
            heights[name] = status["height"]
        self.failures += self.observer.failures
        self.failures += check_liveness(self.poller.new_heights,
                                        self.topology.no_quorum_windows(end), end,
                                        self.spec.max_stall_s)
        closed_everywhere = min(heights.values(), default=0)
        views: list[dict] = []
        for name, api in zip(self.names, self.apis):
            node_views = await _closed_rounds(api, closed_everywhere, self.devnet.genesis.consensus)
            if node_views is None:
                self.failures.append(Failure(ANSWERS, heights.get(name, -1), name,
                                             "GET /rounds did not answer at the end"))
                continue
            views = node_views
            self.failures += check_audits(name, views, self.spec.mine)
        supply_failures, txs = await _check_supply(self.apis[0], self.names[0], self.devnet, self.block_log)
        self.failures += supply_failures
        rounds_closed = closed_everywhere // self.devnet.genesis.consensus.round_blocks
        return {"heights": heights, "rounds_closed": rounds_closed, "txs_in_blocks": txs,
                "accepted_units": sum(u["status"] == "accepted" for v in views for u in v["units"])}

    async def _describe(self, fired: Fired) -> dict:
        record = fired.to_json()
        if fired.proposing is not None:
            record["proposed"] = await _cut_proposer_outcome(self.apis[0], fired.proposing,
                                                             self.devnet)
        return record


async def run_manifest(manifest: Manifest, directory: pathlib.Path,
                       progress: Callable[[str], None] | None = None) -> RunResult:
    """Run manifest with its devnet in directory (which must be empty); every process the
    run starts is stopped before this returns or raises."""
    progress = progress or _stderr(manifest.name)
    began = asyncio.get_running_loop().time()
    devnet = await Devnet.create(manifest.devnet, directory,
                                 SENDERS if manifest.devnet.transfers_per_s else 0)
    try:
        await devnet.compile_kernels()
        devnet.start()
        async with aiohttp.ClientSession() as session:
            run = _Run(manifest, devnet, session, progress)
            summary = await run.run()
    finally:
        await devnet.close()
    summary["seconds"] = round(asyncio.get_running_loop().time() - began, 1)
    return RunResult(sorted(set(run.failures)), summary)


async def _run_until_signalled(manifest: Manifest, directory: pathlib.Path) -> RunResult:
    # SIGTERM (a CI timeout, kill) cancels the run like Ctrl-C does: the nodes are stopped
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_manifest(manifest, directory)


def _run_directory(requested: pathlib.Path | None, name: str) -> pathlib.Path:
    if requested is None:
        return pathlib.Path(tempfile.mkdtemp(prefix=f"uponode-e2e-{name}-"))
    if requested.exists() and (not requested.is_dir() or any(requested.iterdir())):
        raise DevnetError(f"--dir {requested}: not an empty directory")
    requested.mkdir(parents=True, exist_ok=True)
    return requested


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.run",
                                     description="Run an e2e perturbation manifest on a local devnet.")
    parser.add_argument("manifest", type=pathlib.Path, help="the manifest (TOML)")
    parser.add_argument("--dir", type=pathlib.Path,
                        help="an empty directory for the devnet (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the directory (homes, node.log files) after a success too")
    args = parser.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
        directory = _run_directory(args.dir, manifest.name)
    except (ManifestError, DevnetError) as exc:
        print(f"e2e: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_run_until_signalled(manifest, directory))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"e2e {manifest.name}: interrupted; every node stopped; logs in {directory}",
              file=sys.stderr)
        return 130
    except DevnetError as exc:
        print(f"e2e {manifest.name}: error: {exc}", file=sys.stderr)
        return 2
    if result.failures:
        for failure in result.failures:
            print(failure.line())
        print(f"e2e {manifest.name}: {len(result.failures)} invariant failure(s); logs in {directory}",
              file=sys.stderr)
        return 1
    print(json.dumps(result.summary))
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
