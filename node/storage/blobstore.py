"""Content-addressed files for large binary objects (checkpoints, deltas, weights).

A blob lives at root/<first two hex chars>/<64-hex SHA-256>.  It is written to a
temp name in that same directory, fsynced, renamed into place and the directory
fsynced, so a crash leaves either the whole blob or a temp file, which the next
start removes.  Every read re-hashes the data: a blob whose bytes no longer match
its name is moved to root/quarantine/ and never returned.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import re
import tempfile

_DIGEST = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".tmp-"
QUARANTINE = "quarantine"


class BlobNotFound(KeyError):
    """No blob with this digest is stored."""


class BlobCorrupted(Exception):
    """A stored blob's bytes do not hash to its name; it has been quarantined."""


def _check_digest(digest_hex: str) -> None:
    # Digests come from the network; only this exact shape may become a path.
    if not isinstance(digest_hex, str) or not _DIGEST.fullmatch(digest_hex):
        raise ValueError(f"not a lowercase hex SHA-256 digest: {digest_hex!r:.80}")


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under root, named by the hex SHA-256 of their bytes."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / QUARANTINE).mkdir(exist_ok=True)
        self._remove_temp_files()

    def _remove_temp_files(self) -> None:
        """Delete temp files left by a crash in the middle of put."""
        for fan_out in self.root.iterdir():
            if fan_out.is_dir() and fan_out.name != QUARANTINE:
                for leftover in fan_out.glob(_TEMP_PREFIX + "*"):
                    leftover.unlink(missing_ok=True)

    def _path(self, digest_hex: str) -> pathlib.Path:
        _check_digest(digest_hex)
        return self.root / digest_hex[:2] / digest_hex

    def put(self, data: bytes) -> str:
        """Store data durably and return its hex SHA-256; a no-op if already stored."""
        digest_hex = hashlib.sha256(data).hexdigest()
        path = self._path(digest_hex)
        if path.is_file():
            return digest_hex
        if not path.parent.is_dir():
            path.parent.mkdir(exist_ok=True)
            _fsync_dir(self.root)
        fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp_name, path)
        except BaseException:
            pathlib.Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return digest_hex

    def get(self, digest_hex: str) -> bytes:
        """The blob's bytes, verified against its digest."""
        path = self._path(digest_hex)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(digest_hex) from None
        if hashlib.sha256(data).hexdigest() != digest_hex:
            self._quarantine(path)
            raise BlobCorrupted(f"blob {digest_hex} does not match its digest "
                                f"({len(data)} bytes); moved to {QUARANTINE}/")
        return data

    def _quarantine(self, path: pathlib.Path) -> None:
        # Kept rather than deleted so the damage can be looked at; a unique name
        # because the same digest can go bad more than once.
        fd, target = tempfile.mkstemp(prefix=path.name + ".", dir=self.root / QUARANTINE)
        os.close(fd)
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another reader quarantined it first
            os.unlink(target)

    def has(self, digest_hex: str) -> bool:
        return self._path(digest_hex).is_file()

    def size(self, digest_hex: str) -> int:
        try:
            return self._path(digest_hex).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(digest_hex) from None

    def starts_with(self, digest_hex: str, prefix: bytes) -> bool:
        """Whether the stored blob begins with prefix (its kind's magic), reading only that
        far and not verifying the rest; False if it is not stored."""
        try:
            with open(self._path(digest_hex), "rb") as f:
                return f.read(len(prefix)) == prefix
        except FileNotFoundError:
            return False

    def delete(self, digest_hex: str) -> None:
        """Remove a blob; deleting one that is not stored is not an error."""
        self._path(digest_hex).unlink(missing_ok=True)
