"""Polls every validator's GET /status through the run: each reply goes to the invariant
observer (heads and heights), and the time each new highest height is first seen gives
the chain's finality timeline."""
from __future__ import annotations

import asyncio
import statistics
from typing import Callable, Mapping

from tests.e2e.api import NodeApi
from tests.e2e.invariants import ChainObserver

POLL_S = 0.25


class Poller:
    def __init__(self, apis: Mapping[str, NodeApi], observer: ChainObserver,
                 clock: Callable[[], float]):
        self.apis = apis
        self.observer = observer
        self.clock = clock
        self.latest: dict[str, dict] = {}  # each node's last /status reply
        self.new_heights: list[tuple[float, int]] = []  # (time first seen, height)

    @property
    def highest(self) -> int:
        """The highest height seen; -1 before the first reply, so that even a chain stuck
        at its first height has a start for the liveness check to measure from."""
        return self.new_heights[-1][1] if self.new_heights else -1

    async def run(self) -> None:
        """Poll until cancelled."""
        await asyncio.gather(*(self._poll(name, api) for name, api in self.apis.items()))

    async def _poll(self, name: str, api: NodeApi) -> None:
        while True:
            status = await api.status()
            if status is not None:
                self.latest[name] = status
                self.observer.observe_head(name, status["height"], status["head_hash"])
                if status["height"] > self.highest:
                    self.new_heights.append((self.clock(), status["height"]))
            await asyncio.sleep(POLL_S)


def finality_p50(new_heights: list[tuple[float, int]], start: float, end: float) -> float | None:
    """The median time between consecutive heights becoming final, over the heights first
    seen in [start, end); a jump of several heights between two polls counts as that
    many equal intervals.  None if no height was seen then."""
    intervals = []
    for (t0, h0), (t1, h1) in zip(new_heights, new_heights[1:]):
        if start <= t1 < end:
            intervals += [(t1 - t0) / (h1 - h0)] * (h1 - h0)
    return round(statistics.median(intervals), 3) if intervals else None
