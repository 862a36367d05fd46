"""`uponode keys show`: the node's public key, which is also its account address."""
from __future__ import annotations

import argparse
import json
import pathlib

HELP = "the node's key"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    show = commands.add_parser(
        "show", help="print the node's public key (its account address)",
        description="Print the node's public key, which is also its account address.  "
                    "The private key is never printed.")
    show.add_argument("--home", required=True, help="the node's home directory")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from node.storage.home import load_node_key
    public_key = load_node_key(pathlib.Path(args.home)).public_key.hex()
    if args.json:
        # an account's address is its ed25519 public key
        print(json.dumps({"type": "ed25519", "public_key": public_key, "address": public_key}))
    else:
        print(public_key)
    return 0
