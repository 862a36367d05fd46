"""Carrying out a manifest's perturbations on a running devnet.

Topology keeps which validators are down and which pairs are cut, counting overlapping
perturbations so that one's heal never undoes another's cut, and records the windows
in which no group of connected, running validators holds a quorum: the only times the
chain may stall.  Perturber waits for each perturbation's moment (a time, or a phase of
the training round read from the API), applies it, and heals it after its duration.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
from typing import Callable, Sequence

from node.consensus.proposer import proposer_for
from tests.e2e.api import NodeApi
from tests.e2e.devnet import Devnet
from tests.e2e.manifest import ROUND_CLOSE, Perturbation
from tests.e2e.poller import Poller

TRIGGER_POLL_S = 0.05  # a round phase lasts a block interval or more


class PerturbationError(Exception):
    """A perturbation that could not be carried out; the message is one line."""


class Topology:
    """The validators' processes and links as the perturbations left them."""

    def __init__(self, devnet: Devnet, powers: Sequence[int], clock: Callable[[], float]):
        self.devnet = devnet
        self.powers = list(powers)
        self.clock = clock
        self._down: collections.Counter[int] = collections.Counter()
        self._cut: collections.Counter[frozenset[int]] = collections.Counter()
        self._lost_at: float | None = None
        self._no_quorum: list[tuple[float, float]] = []

    def is_down(self, node: int) -> bool:
        return self._down[node] > 0

    def set_down(self, node: int, down: bool) -> None:
        self._down[node] += 1 if down else -1
        self._note()

    def cut(self, pairs: Sequence[tuple[int, int]]) -> None:
        for i, j in pairs:
            self._cut[frozenset((i, j))] += 1
            if self._cut[frozenset((i, j))] == 1:
                self.devnet.proxies[(i, j)].cut()
                self.devnet.proxies[(j, i)].cut()
        self._note()

    def heal(self, pairs: Sequence[tuple[int, int]]) -> None:
        for i, j in pairs:
            self._cut[frozenset((i, j))] -= 1
            if self._cut[frozenset((i, j))] == 0:
                self.devnet.proxies[(i, j)].heal()
                self.devnet.proxies[(j, i)].heal()
        self._note()

    def quorum_possible(self) -> bool:
        """Whether some connected group of running validators holds more than 2/3 of the power."""
        unseen = {n for n in range(len(self.powers)) if not self.is_down(n)}
        while unseen:
            group, frontier = set(), [unseen.pop()]
            while frontier:
                node = frontier.pop()
                group.add(node)
                linked = {m for m in unseen if self._cut[frozenset((node, m))] == 0}
                unseen -= linked
                frontier += linked
            if 3 * sum(self.powers[n] for n in group) > 2 * sum(self.powers):
                return True
        return False

    def no_quorum_windows(self, end: float) -> list[tuple[float, float]]:
        """The windows without a quorum so far, one still open closed at end."""
        still_open = [(self._lost_at, end)] if self._lost_at is not None else []
        return self._no_quorum + still_open

    def _note(self) -> None:
        now, possible = self.clock(), self.quorum_possible()
        if not possible and self._lost_at is None:
            self._lost_at = now
        elif possible and self._lost_at is not None:
            self._no_quorum.append((self._lost_at, now))
            self._lost_at = None


@dataclasses.dataclass
class Fired:
    """What a perturbation did: whom it hit, when and at which height it fired and healed."""
    perturbation: Perturbation
    nodes: tuple[int, ...]
    fired_s: float
    fired_height: int
    healed_s: float = 0.0
    healed_height: int = 0
    proposing: int | None = None  # cut_proposer: the height its target was to propose

    def to_json(self) -> dict:
        p = self.perturbation
        return {"index": p.index, "kind": p.kind, "nodes": [f"node-{n}" for n in self.nodes],
                "fired_s": round(self.fired_s, 1), "fired_height": self.fired_height,
                "healed_s": round(self.healed_s, 1), "healed_height": self.healed_height}


class Perturber:
    def __init__(self, devnet: Devnet, topology: Topology, apis: Sequence[NodeApi], poller: Poller,
                 start: float, trigger_timeout_s: float, progress: Callable[[str], None]):
        self.devnet = devnet
        self.topology = topology
        self.apis = apis
        self.poller = poller
        self.start = start  # loop time when every node answered
        self.trigger_timeout_s = trigger_timeout_s
        self.progress = progress
        self._close_heights: dict[int, int] = {}  # round -> close height, from /rounds/{r}

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self.start

    async def run(self, p: Perturbation) -> Fired:
        """Wait for p's moment, apply it, heal it after its duration."""
        await asyncio.sleep(max(0.0, p.start_s - self._now()))
        if p.at is not None:
            await self._await_phase(p)
        proposing = None
        if p.kind == "cut_proposer":
            node, proposing = await self._proposer(p)
            nodes: tuple[int, ...] = (node,)
        elif p.kind == "partition":
            nodes = tuple(n for group in p.groups for n in group)
        else:
            assert p.node is not None
            nodes = (p.node,)
        fired = Fired(p, nodes, self._now(), self.poller.highest, proposing=proposing)
        self.progress(f"+{fired.fired_s:.1f} s height {fired.fired_height}: {p.describe()} "
                      f"fired on {', '.join(f'node-{n}' for n in nodes)}")
        await self._apply(p, nodes)
        fired.healed_s, fired.healed_height = self._now(), self.poller.highest
        self.progress(f"+{fired.healed_s:.1f} s height {fired.healed_height}: {p.describe()} healed")
        return fired

    async def _apply(self, p: Perturbation, nodes: tuple[int, ...]) -> None:
        # no heal on cancellation: the runner then stops every process and proxy anyway
        if p.kind in ("disconnect", "cut_proposer", "partition"):
            pairs = self._pairs(p, nodes)
            self.topology.cut(pairs)
            await asyncio.sleep(p.duration_s)
            self.topology.heal(pairs)
            return
        (node,) = nodes
        process = self.devnet.validators[node]
        self.topology.set_down(node, True)
        if p.kind == "pause":
            process.pause()
        elif p.kind == "kill":
            process.kill()
        else:  # restart
            await process.stop()
        await asyncio.sleep(p.duration_s)
        if p.kind == "pause":
            process.resume()
        else:
            process.start()
        self.topology.set_down(node, False)

    def _pairs(self, p: Perturbation, nodes: tuple[int, ...]) -> list[tuple[int, int]]:
        if p.kind == "partition":
            return [(i, j) for a, b in itertools.combinations(p.groups, 2) for i in a for j in b]
        (node,) = nodes
        return [(node, j) for j in range(len(self.devnet.validators)) if j != node]

    async def _leading_status(self) -> tuple[NodeApi, dict]:
        """A fresh /status of the running validator that was highest at the last poll."""
        latest = self.poller.latest
        leader = max(range(len(self.apis)), key=lambda n: (
            not self.topology.is_down(n),
            latest.get(self.devnet.validators[n].name, {}).get("height", -1)))
        status = await self.apis[leader].status()
        return self.apis[leader], status or {}

    async def _await_phase(self, p: Perturbation) -> None:
        """Until the chain is within p.within_blocks of a round close (at = "round_close")
        or the next block is in phase p.at, as the leading validator's API says."""
        deadline = self._now() + self.trigger_timeout_s
        while self._now() < deadline:
            api, status = await self._leading_status()
            if "height" in status:
                if p.at == ROUND_CLOSE:
                    close = await self._close_height(api, status["round"])
                    if close is not None and close - status["height"] <= p.within_blocks:
                        return
                elif status["phase"] == p.at:
                    return
            await asyncio.sleep(TRIGGER_POLL_S)
        raise PerturbationError(f"{p.describe()} never fired: the chain never reached {p.at} "
                                f"within {self.trigger_timeout_s:g} s after +{p.start_s:g} s")

    async def _close_height(self, api: NodeApi, round_: int) -> int | None:
        if round_ not in self._close_heights:
            view = await api.round(round_)
            if view is None:
                return None
            self._close_heights[round_] = view["close_height"]
        return self._close_heights[round_]

    async def _proposer(self, p: Perturbation) -> tuple[int, int]:
        """(validator, height): who proposes the next height, caught just after a height is
        final: the proposal waits a block interval, so it is cut before it leaves."""
        _, first = await self._leading_status()
        deadline = self._now() + self.trigger_timeout_s
        while self._now() < deadline:
            _, status = await self._leading_status()
            if status.get("height", -1) > first.get("height", -1):
                # the genesis validators, in genesis order: no epoch ends within a run
                committee = [(v.pub_key, v.power) for v in self.devnet.genesis.validators]
                height = status["height"] + 1
                key = proposer_for(committee, height, status["consensus_round"] or 0)
                return next(i for i, (k, _) in enumerate(committee) if k == key), height
            await asyncio.sleep(TRIGGER_POLL_S)
        raise PerturbationError(f"{p.describe()} never fired: no new height within "
                                f"{self.trigger_timeout_s:g} s to find the proposer by")
