"""The double-sign guard: the last (height, round, step) this validator signed, and
the block it is locked on, each persisted with a synced write before the signed
message leaves the process.

After a crash the node reloads both: its consensus core refuses to sign at or
before that step and keeps its lock, so a restarted validator never signs a
conflicting vote.
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
        self.lock_path = path.with_name(path.name + ".lock")

    def load(self) -> tuple[int, int, int, bytes] | None:
        """The last signed (height, round, kind, message), or None if this validator
        never signed.  The message lets a restarted node re-send what it signed, since
        it will never sign that step again."""
        body = self._read(self.path)
        if body is None:
            return None
        if len(body) < _SIZE:
            raise GuardCorrupted(f"{self.path} is damaged; refusing to sign until it is checked")
        return (*struct.unpack(_FORMAT, body[:_SIZE]), body[_SIZE:])

    def record(self, height: int, round_: int, kind: int, message: bytes) -> None:
        _write_durably(self.path, struct.pack(_FORMAT, height, round_, kind) + message)

    def load_lock(self) -> tuple[int, bytes] | None:
        """(round, encoded block) of the last lock, or None."""
        body = self._read(self.lock_path)
        if body is None:
            return None
        return struct.unpack(">I", body[:4])[0], body[4:]

    def record_lock(self, round_: int, block: bytes) -> None:
        _write_durably(self.lock_path, struct.pack(">I", round_) + block)

    @staticmethod
    def _read(path: pathlib.Path) -> bytes | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        body, checksum = raw[:-32], raw[-32:]
        if len(raw) < 32 or hashlib.sha256(body).digest() != checksum:
            raise GuardCorrupted(f"{path} is damaged; refusing to sign until it is checked")
        return body


def _write_durably(path: pathlib.Path, body: bytes) -> None:
    """body and its checksum: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        os.write(fd, body + hashlib.sha256(body).digest())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
