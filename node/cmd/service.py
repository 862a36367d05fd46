"""What the long-running commands (start, audit) share: logging to stderr and an event
loop that runs until SIGINT or SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Awaitable, Callable

from node.cmd.malloc import tune_allocator


def log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run run(stop) in an event loop; SIGINT or SIGTERM sets stop."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    tune_allocator()  # before the loop's worker threads exist
    asyncio.run(main())
