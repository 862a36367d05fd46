"""`uponode start`: run a full node until SIGINT or SIGTERM.

The node itself is the root's wiring, which no command may import: the entry point
hands run() what builds it."""
from __future__ import annotations

import argparse
import asyncio
import pathlib
from typing import Callable, Protocol

from node.cmd import passphrase
from node.cmd.arguments import address_argument
from node.cmd.service import log_to_stderr, run_until_signalled
from node.types.errors import CommandError

HELP = "run a full node"
DESCRIPTION = "Run a full node until SIGINT or SIGTERM."


class FullNode(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", required=True, help="the node's home directory")
    passphrase.add_argument(parser)
    parser.add_argument("--gpu", action="store_true", help="mine on the CUDA backend")
    parser.add_argument("--no-mine", action="store_true", help="follow the chain without mining")
    parser.add_argument("--peer", action="append", metavar="HOST:PORT",
                        help="a peer to connect to (repeatable; replaces the config's peers)")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="address of the HTTP and peer server (default: the config's)")
    parser.add_argument("--state-sync", action="store_true",
                        help="begin an empty home from a peer's recent snapshot, checked against "
                             "the chain's commits from genesis, instead of replaying every block "
                             "(a node more than the retention window behind does so by itself, a new "
                             "one included)")
    parser.add_argument("--archive", action="store_true",
                        help="replay the whole chain from genesis, never begin from a snapshot, and "
                             "keep every block and every round's deltas and models (past the "
                             "retention window it replays only from archive peers)")


def run(args: argparse.Namespace, build_node: Callable[..., FullNode]) -> int:
    """Run the full node that build_node(home, listen, peers, mine=, backend=, state_sync=,
    archive=) wires."""
    from node.storage.home import load_home
    if args.gpu:
        from node.uPoW.backends import backend_for
        backend_for(gpu=True)
    home = load_home(pathlib.Path(args.home), passphrase.source(args))
    listen = address_argument(args.listen, "--listen") if args.listen else home.config.listen
    peers = tuple(address_argument(p, "--peer") for p in args.peer) if args.peer else home.config.peers
    if args.state_sync and args.archive:
        raise CommandError("--state-sync and --archive exclude each other: an archive replays the "
                           "chain from genesis")
    if args.state_sync and not peers:
        raise CommandError("--state-sync needs a peer to take the snapshot from (--peer HOST:PORT, "
                           "or peers in the config)")
    log_to_stderr()
    node = build_node(home, listen, peers, mine=home.config.mine and not args.no_mine,
                      backend="cuda" if args.gpu else "cpu", state_sync=args.state_sync,
                      archive=args.archive)
    from node.storage.chainstore import StoreError
    try:
        run_until_signalled(node.run)
    except StoreError as exc:  # the chain's store is locked, missing or corrupted
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    return 0
