"""The double-sign guard: the last (height, round, step) this validator signed, what
it signed at that height, and the block it is locked on, each persisted with a synced
write before the signed message leaves the process.

After a crash the node reloads them: its consensus core refuses to sign at or before
that step and keeps its lock, so a restarted validator never signs a conflicting
vote; and it sends again what it signed at the height (a write-ahead log of its own
votes, as Tendermint's WAL has them), since it will never sign those steps again and
a vote lost in the crash can be one its peers need for a quorum.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import struct

_FORMAT = ">QIB"  # height, round, step kind
_SIZE = struct.calcsize(_FORMAT)
_ENTRY = ">BI"  # step kind, message length
_ENTRY_SIZE = struct.calcsize(_ENTRY)
# Opens the format that logs the height's messages; a file of the first format (the step
# and the last message only) starts with a height, whose top byte is never 0xff.
_LOG_MAGIC = b"\xffSG2"
_PROPOSE = 0  # a proposal (a whole block) is logged only while it is the last thing signed
MAX_LOGGED = 64  # messages of one height kept (the last 32 rounds' votes at least)


class GuardCorrupted(Exception):
    """The guard file exists but cannot be read back: signing must not resume blindly."""


class SignGuard:
    def __init__(self, path: pathlib.Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        # what the file holds, once read or written: record need not read it back
        self._log: tuple[tuple[int, int, int], list[tuple[int, bytes]]] | None = None

    def load(self) -> tuple[int, int, int, bytes] | None:
        """The last signed (height, round, kind, message), or None if this validator
        never signed."""
        log = self._read_log()
        if log is None:
            return None
        step, entries = log
        return (*step, entries[-1][1])

    def signed_at(self, height: int) -> list[bytes]:
        """What this validator signed at height and may send again, oldest first: its
        votes (up to MAX_LOGGED messages) and its proposal if that was the last."""
        log = self._read_log()
        return [message for _, message in log[1]] if log is not None and log[0][0] == height else []

    def record(self, height: int, round_: int, kind: int, message: bytes) -> None:
        log = self._log if self._log is not None else self._read_log()
        entries = [e for e in log[1] if e[0] != _PROPOSE] if log and log[0][0] == height else []
        entries = (entries + [(kind, message)])[-MAX_LOGGED:]
        body = b"".join([_LOG_MAGIC, struct.pack(_FORMAT, height, round_, kind)]
                        + [struct.pack(_ENTRY, k, len(m)) + m for k, m in entries])
        _write_durably(self.path, body)
        self._log = ((height, round_, kind), entries)

    def _read_log(self) -> tuple[tuple[int, int, int], list[tuple[int, bytes]]] | None:
        body = self._read(self.path)
        self._log = self._parse(body) if body is not None else None
        return self._log

    def _parse(self, body: bytes) -> tuple[tuple[int, int, int], list[tuple[int, bytes]]]:
        damaged = GuardCorrupted(f"{self.path} is damaged; refusing to sign until it is checked")
        logged = body.startswith(_LOG_MAGIC)
        if logged:
            body = body[len(_LOG_MAGIC):]
        if len(body) < _SIZE:
            raise damaged
        step = struct.unpack(_FORMAT, body[:_SIZE])
        if not logged:
            return step, [(step[2], body[_SIZE:])]
        entries, at = [], _SIZE
        while at < len(body):
            if at + _ENTRY_SIZE > len(body):
                raise damaged
            kind, length = struct.unpack(_ENTRY, body[at:at + _ENTRY_SIZE])
            at += _ENTRY_SIZE + length
            if at > len(body):
                raise damaged
            entries.append((kind, body[at - length:at]))
        if not entries:
            raise damaged
        return step, entries

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
