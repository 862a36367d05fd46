"""`uponode audit`: run the light-audit node until SIGINT or SIGTERM."""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from node.types.errors import CommandError
from node.storage.home import load_home
from node.cmd.start import address_argument, run_until_signalled


def run_audit(args: argparse.Namespace) -> int:
    home = load_home(pathlib.Path(args.home))
    peers = [address_argument(p, "--peer") for p in args.peer] if args.peer else list(home.config.peers)
    if not peers:
        raise CommandError("--peer: a light-audit node needs at least one full node to follow "
                           "(give --peer HOST:PORT or peers in config.toml)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from node.verify.light_audit import LightAuditor  # loads the kernels

    run_until_signalled(LightAuditor(home, peers).run)
    return 0
