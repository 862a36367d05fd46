"""`uponode audit`: run the light-audit node until SIGINT or SIGTERM."""
from __future__ import annotations

import argparse
import pathlib

from node.cmd import passphrase
from node.cmd.arguments import address_argument
from node.cmd.service import log_to_stderr, run_until_signalled
from node.types.errors import CommandError

HELP = "run a light-audit node"
DESCRIPTION = ("Follow the chain through full nodes' HTTP APIs, re-execute the training "
               "segments this key is assigned to audit, and report the results.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", required=True, help="the auditor's home directory")
    passphrase.add_argument(parser)
    parser.add_argument("--peer", action="append", metavar="HOST:PORT",
                        help="a full node's HTTP address (repeatable; replaces the config's peers)")


def run(args: argparse.Namespace) -> int:
    from node.storage.home import load_home
    home = load_home(pathlib.Path(args.home), passphrase.source(args))
    peers = [address_argument(p, "--peer") for p in args.peer] if args.peer else list(home.config.peers)
    if not peers:
        raise CommandError("--peer: a light-audit node needs at least one full node to follow "
                           "(give --peer HOST:PORT or peers in config.toml)")
    log_to_stderr()
    from node.verify.light_audit import LightAuditor  # loads the kernels

    run_until_signalled(LightAuditor(home, peers).run)
    return 0
