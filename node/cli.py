"""The `uponode` command line (DESIGN.md §6): a table of commands, each a module of
node/cmd with its HELP, DESCRIPTION, add_arguments(parser) and run(args).

Bad arguments, genesis files and environments end in one line on stderr naming
the problem and exit code 2, never a traceback.  Heavy modules (numba, torch,
aiohttp) are imported only inside a command's run, after the arguments are checked,
so that --threads can size numba's thread pool before it starts.
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Callable, Sequence

from node.cmd import audit, bench, init, keys, start, status, train, tx
from node.cmd.arguments import EXIT_BAD_INPUT, Parser
from node.types.errors import CommandError
from node.types.genesis import GenesisError


def _start(args: argparse.Namespace) -> int:
    from node.node import Node  # aiohttp and the consensus stack load only for this command
    return start.run(args, Node)


# name: (the module that declares the command, what runs it), in the order --help lists them
COMMANDS: dict[str, tuple[ModuleType, Callable[[argparse.Namespace], int]]] = {
    "train": (train, train.run),
    "init": (init, init.run),
    "start": (start, _start),
    "audit": (audit, audit.run),
    "keys": (keys, keys.run),
    "bench": (bench, bench.run),
    "status": (status, status.run),
    "tx": (tx, tx.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="uponode", description="A node of a chain where mining is training.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, _) in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=module.HELP,
                                                 description=module.DESCRIPTION))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except (CommandError, GenesisError) as exc:
        print(f"uponode {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"uponode {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
