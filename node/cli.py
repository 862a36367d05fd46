"""The `uponode` command line (DESIGN.md §6).

Bad arguments, genesis files and environments end in one line on stderr naming
the problem and exit code 2, never a traceback.  Heavy modules (numba, torch) are
imported only after the arguments are checked, so that --threads can size
numba's thread pool before it starts.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Sequence

from node.errors import CommandError

EXIT_BAD_INPUT = 2


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more, got 0")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage dump), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="uponode", description="A node of a chain where mining is training.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train the genesis model in one process, exactly as a miner does",
        description="Train the genesis model with the deterministic kernels, no chain.")
    train.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    train.add_argument("--steps", type=_non_negative_int,
                       help="training steps (default: the genesis's steps_per_unit)")
    train.add_argument("--threads", type=_positive_int, help="CPU threads (default: all cores)")
    train.add_argument("--gpu", action="store_true", help="train on the CUDA backend")
    train.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    train.add_argument("--export", metavar="FILE",
                       help="write the trained weights to FILE as safetensors")

    init = commands.add_parser(
        "init", help="create a node home: key, config and genesis",
        description="Create a node home with a new key, a default config.toml and a copy "
                    "of the genesis file and its corpus.  Never replaces an existing key.")
    init.add_argument("--home", required=True, help="the node's home directory")
    init.add_argument("--genesis", help="genesis file (default: the devnet genesis)")

    keys = commands.add_parser("keys", help="the node's key")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    show = keys_commands.add_parser(
        "show", help="print the node's public key (its account address)",
        description="Print the node's public key, which is also its account address.  "
                    "The private key is never printed.")
    show.add_argument("--home", required=True, help="the node's home directory")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")

    bench = commands.add_parser("bench", help="benchmarks against torch in the same process")
    bench.add_argument("target", choices=["kernels"], help="what to benchmark")
    bench.add_argument("--genesis", help="genesis file whose model shapes to use")
    bench.add_argument("--threads", type=_positive_int, action="append",
                       help="thread count to measure at (repeatable; default: 1 and all cores)")
    bench.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    return parser


def _set_threads(threads: int | None) -> None:
    # numba sizes its pool from this variable when it is first imported
    if threads is not None and threads > int(os.environ.get("NUMBA_NUM_THREADS", "0") or 0):
        os.environ["NUMBA_NUM_THREADS"] = str(max(threads, os.cpu_count() or 1))


def _run_init(args: argparse.Namespace) -> int:
    from node.home import init_home
    genesis_path = pathlib.Path(args.genesis) if args.genesis else None
    home = init_home(pathlib.Path(args.home), genesis_path)
    print(f"home: {home.path.resolve()}")
    print(f"public_key: {home.key.public_key.hex()}")
    print(f"chain_id: {home.genesis.chain_id}")
    print(f"genesis_hash: {home.genesis.hash}")
    return 0


def _run_keys_show(args: argparse.Namespace) -> int:
    from node.home import load_node_key
    public_key = load_node_key(pathlib.Path(args.home)).public_key.hex()
    if args.json:
        # an account's address is its ed25519 public key
        print(json.dumps({"type": "ed25519", "public_key": public_key, "address": public_key}))
    else:
        print(public_key)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    from node.genesis import GenesisError

    try:
        if args.command == "train":
            _set_threads(args.threads)
            from node.train_command import run_train
            return run_train(args)
        if args.command == "bench":
            _set_threads(max(args.threads or [0]) or None)
            from node.bench import run_bench
            return run_bench(args)
        if args.command == "init":
            return _run_init(args)
        if args.command == "keys":
            return _run_keys_show(args)
    except (CommandError, GenesisError) as exc:
        print(f"uponode {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"uponode {args.command}: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
