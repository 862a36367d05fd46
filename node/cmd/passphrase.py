"""Where a command gets the passphrase of a sealed key: --passphrase-file, else a prompt
in a terminal.  Nothing asks before the key file is known to be sealed."""
from __future__ import annotations

import argparse
import getpass
import pathlib
import sys
from typing import Callable

from node.types.errors import CommandError

MAX_PASSPHRASE_BYTES = 1024


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passphrase-file", type=pathlib.Path, metavar="FILE",
                        help="the passphrase of a sealed key: the file's first line (default: "
                             "asked in the terminal)")


def source(args: argparse.Namespace, confirm: bool = False) -> Callable[[], bytes]:
    """A function giving the passphrase when called: the file's, or one typed at a prompt
    (twice, the same, with confirm); CommandError if there is neither."""
    def read() -> bytes:
        if args.passphrase_file is not None:
            return _from_file(args.passphrase_file)
        if not sys.stdin.isatty():
            raise CommandError("a passphrase is needed: give --passphrase-file FILE, or run in a "
                               "terminal to be asked")
        typed = _prompt("passphrase: ")
        if confirm and _prompt("the same passphrase again: ") != typed:
            raise CommandError("the two passphrases differ; nothing was written")
        return typed
    return read


def _prompt(text: str) -> bytes:
    typed = getpass.getpass(text).encode()
    if not typed:
        raise CommandError("the passphrase is empty")
    return typed


def _from_file(path: pathlib.Path) -> bytes:
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_PASSPHRASE_BYTES + 2)
    except OSError as exc:
        raise CommandError(f"--passphrase-file {path}: cannot read: {exc.strerror}") from None
    line = raw.split(b"\n", 1)[0].removesuffix(b"\r")
    if not line:
        raise CommandError(f"--passphrase-file {path}: its first line is empty")
    if len(line) > MAX_PASSPHRASE_BYTES:
        raise CommandError(f"--passphrase-file {path}: longer than {MAX_PASSPHRASE_BYTES} bytes")
    return line
