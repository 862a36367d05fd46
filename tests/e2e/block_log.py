"""Every finalized block, read as the chain grows: past the retention window the nodes
prune old blocks, so the supply check (fees and emission since genesis) cannot read
them at the end of a run."""
from __future__ import annotations

import asyncio
from typing import Callable, Sequence

from tests.e2e.api import NodeApi

READ_S = 2.0  # far inside the window: a window is rounds of blocks
BLOCK_READS = 32  # GET /blocks in flight at once


class BlockLog:
    def __init__(self, apis: Sequence[NodeApi], highest: Callable[[], int]):
        self.apis = apis
        self.highest = highest  # the highest height any validator reported
        self.blocks: list[dict] = []  # GET /blocks/{h} of heights 1..len

    async def run(self) -> None:
        """Read up to the highest height reported, every READ_S, until cancelled."""
        while True:
            await self.read_to(self.highest())
            await asyncio.sleep(READ_S)

    async def read_to(self, last: int) -> bool:
        """Read the blocks up to last not read yet; False if a height no validator serves
        stops it (not made yet, or a bug)."""
        while len(self.blocks) < last:
            first = len(self.blocks) + 1
            heights = range(first, min(last, first + BLOCK_READS - 1) + 1)
            batch = await asyncio.gather(*(self._block(h) for h in heights))
            for block in batch:
                if block is None:
                    return False
                self.blocks.append(block)
        return True

    async def _block(self, height: int) -> dict | None:
        for api in self.apis:  # any validator: perturbations take some down
            block = await api.block(height)
            if block is not None:
                return block
        return None
