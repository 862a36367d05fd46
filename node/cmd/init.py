"""`uponode init`: create a node home with a new key, a config and the genesis."""
from __future__ import annotations

import argparse
import pathlib

from node.cmd import passphrase
from node.types.errors import CommandError

HELP = "create a node home: key, config and genesis"
DESCRIPTION = ("Create a node home with a new key, a default config.toml and a copy "
               "of the genesis file and its corpus.  Never replaces an existing key.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", required=True, help="the node's home directory")
    parser.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    parser.add_argument("--encrypt", action="store_true",
                        help="seal the new key's seed with a passphrase (Argon2id and "
                             "XSalsa20-Poly1305): every command that signs then asks for it")
    passphrase.add_argument(parser)


def run(args: argparse.Namespace) -> int:
    from node.storage.home import init_home
    genesis_path = pathlib.Path(args.genesis) if args.genesis else None
    if args.passphrase_file is not None and not args.encrypt:
        raise CommandError("--passphrase-file seals the key only with --encrypt")
    sealing = passphrase.source(args, confirm=True)() if args.encrypt else None
    home = init_home(pathlib.Path(args.home), genesis_path, passphrase=sealing)
    print(f"home: {home.path.resolve()}")
    print(f"public_key: {home.key.public_key.hex()}")
    print(f"chain_id: {home.genesis.chain_id}")
    print(f"genesis_hash: {home.genesis.hash}")
    return 0
