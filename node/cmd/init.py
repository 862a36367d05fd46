"""`uponode init`: create a node home with a new key, a config and the genesis."""
from __future__ import annotations

import argparse
import pathlib

HELP = "create a node home: key, config and genesis"
DESCRIPTION = ("Create a node home with a new key, a default config.toml and a copy "
               "of the genesis file and its corpus.  Never replaces an existing key.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", required=True, help="the node's home directory")
    parser.add_argument("--genesis", help="genesis file (default: the devnet genesis)")


def run(args: argparse.Namespace) -> int:
    from node.storage.home import init_home
    genesis_path = pathlib.Path(args.genesis) if args.genesis else None
    home = init_home(pathlib.Path(args.home), genesis_path)
    print(f"home: {home.path.resolve()}")
    print(f"public_key: {home.key.public_key.hex()}")
    print(f"chain_id: {home.genesis.chain_id}")
    print(f"genesis_hash: {home.genesis.hash}")
    return 0
