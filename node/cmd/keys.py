"""`uponode keys show`: the node's public key, which is also its account address."""
from __future__ import annotations

import argparse
import json
import pathlib

from node.cmd import passphrase

HELP = "the node's key"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    show = commands.add_parser(
        "show", help="print the node's public key (its account address)",
        description="Print the node's public key, which is also its account address.  "
                    "The private key is never printed.  A sealed key's public key shows "
                    "without its passphrase; --check opens it with the passphrase.")
    show.add_argument("--home", required=True, help="the node's home directory")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    show.add_argument("--check", action="store_true",
                      help="open a sealed key with its passphrase, to check it (the public key "
                           "shows without it)")
    passphrase.add_argument(show)


def run(args: argparse.Namespace) -> int:
    from node.storage.home import key_path, read_key_file, read_public_key
    path = key_path(pathlib.Path(args.home))
    if args.check or args.passphrase_file is not None:
        public_key = read_key_file(path, passphrase.source(args)).public_key.hex()
    else:
        public_key = read_public_key(path).hex()
    if args.json:
        # an account's address is its ed25519 public key
        print(json.dumps({"type": "ed25519", "public_key": public_key, "address": public_key}))
    else:
        print(public_key)
    return 0
