"""`uponode start`: run a full node until SIGINT or SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import signal
import sys
from typing import Awaitable, Callable

from node.storage.config import parse_host_port
from node.types.errors import CommandError
from node.storage.home import load_home


def address_argument(text: str, flag: str) -> str:
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise CommandError(f"{flag} {text!r}: {exc}") from None
    return text


def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run run(stop) in an event loop; SIGINT or SIGTERM sets stop."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())


def run_start(args: argparse.Namespace, node_class: type) -> int:
    """Run the full node that node_class wires (the root's Node) until a signal."""
    if args.gpu:
        from node.uPoW.backends import backend_for
        backend_for(gpu=True)
    home = load_home(pathlib.Path(args.home))
    listen = address_argument(args.listen, "--listen") if args.listen else home.config.listen
    peers = tuple(address_argument(p, "--peer") for p in args.peer) if args.peer else home.config.peers
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node = node_class(home, listen, peers, mine=home.config.mine and not args.no_mine,
                backend="cuda" if args.gpu else "cpu")
    try:
        run_until_signalled(node.run)
    except OSError as exc:
        raise CommandError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    return 0
