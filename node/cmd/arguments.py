"""What the commands share about their arguments: the parser whose errors are one line,
the argument types, and the settings that must be made before a heavy module loads."""
from __future__ import annotations

import argparse
import os

from node.storage.config import parse_host_port
from node.types.errors import CommandError

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage dump), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more, got 0")
    return value


def _hex64(text: str, what: str) -> str:
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"{what} is 64 hex digits, got {text!r}")
    return text.lower()


def account_address(text: str) -> bytes:
    return bytes.fromhex(_hex64(text, "an address"))


def tx_hash(text: str) -> str:
    """A transaction's hash as the API spells it: 64 lowercase hex digits."""
    return _hex64(text, "a transaction hash")


def amount(text: str) -> int:
    value = positive_int(text)
    if value >= 1 << 64:
        raise argparse.ArgumentTypeError(f"must be below 2^64, got {value}")
    return value


def fee(text: str) -> int:
    value = non_negative_int(text)
    if value >= 1 << 64:
        raise argparse.ArgumentTypeError(f"must be below 2^64, got {value}")
    return value


def rpc_url(text: str) -> str:
    from node.net.rpc_client import check_url
    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def address_argument(text: str, flag: str) -> str:
    """A HOST:PORT given to flag, checked; a CommandError naming flag otherwise."""
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise CommandError(f"{flag} {text!r}: {exc}") from None
    return text


def set_numba_threads(threads: int | None) -> None:
    """Make room for threads in numba's pool; call it before numba is first imported,
    since numba sizes its pool from NUMBA_NUM_THREADS then."""
    if threads is not None and threads > int(os.environ.get("NUMBA_NUM_THREADS", "0") or 0):
        os.environ["NUMBA_NUM_THREADS"] = str(max(threads, os.cpu_count() or 1))
