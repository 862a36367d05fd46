"""The double-sign guard: the last (height, round, step) this validator signed,
persisted with a synced write before the signed message leaves the process.

After a crash the node reloads it and its consensus core refuses to sign at or
before that step, so a restarted validator never signs a conflicting vote.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import struct

_FORMAT = ">QIB"  # height, round, step kind
_SIZE = struct.calcsize(_FORMAT)


class GuardCorrupted(Exception):
    """The guard file exists but cannot be read back: signing must not resume blindly."""


class SignGuard:
    def __init__(self, path: pathlib.Path):
        self.path = path

    def load(self) -> tuple[int, int, int] | None:
        """The last signed (height, round, kind), or None if this validator never signed."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        body, checksum = raw[:_SIZE], raw[_SIZE:]
        if len(body) != _SIZE or hashlib.sha256(body).digest() != checksum:
            raise GuardCorrupted(f"{self.path} is damaged; refusing to sign until it is checked")
        return struct.unpack(_FORMAT, body)

    def record(self, height: int, round_: int, kind: int) -> None:
        """Durably record a step: temp file, fsync, rename, fsync the directory."""
        body = struct.pack(_FORMAT, height, round_, kind)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        try:
            os.write(fd, body + hashlib.sha256(body).digest())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
