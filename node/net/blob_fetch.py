"""Fetching content-addressed blobs (checkpoints, deltas) from peers' GET /blobs/{sha256}.

A peer's answer is trusted for nothing: the body is read up to a size cap and kept only
if it hashes to the digest asked for.  A peer that is down, slow, answers an error or
sends the wrong bytes is logged and the next address tried; fetching never raises for
what a peer does.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Callable, Sequence

import aiohttp

from node.storage.blobstore import BlobStore

log = logging.getLogger(__name__)

# the most bytes a node reads for one blob (a model, a delta, a checkpoint) from a peer
MAX_BLOB_BYTES = 64 << 20
_CHUNK = 1 << 16
# host:port, the host a name, an IPv4 or a bracketed IPv6 address: nothing that could
# turn the URL built from it into another path or query
_ADDRESS = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")


class _Refused(Exception):
    """What a peer sent is not the blob asked for."""
    level = logging.INFO


class _Absent(_Refused):
    """The peer does not have the blob: routine, not misbehaviour."""
    level = logging.DEBUG


async def _read_body(reply: aiohttp.ClientResponse, digest: bytes, max_bytes: int) -> bytes:
    if reply.status == 404:
        raise _Absent("not found")
    if reply.status != 200:
        raise _Refused(f"status {reply.status}")
    if reply.content_length is not None and reply.content_length > max_bytes:
        raise _Refused(f"Content-Length {reply.content_length} exceeds {max_bytes} bytes")
    chunks, size, hasher = [], 0, hashlib.sha256()
    async for chunk in reply.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _Refused(f"the body exceeds {max_bytes} bytes")
        hasher.update(chunk)
        chunks.append(chunk)
    if hasher.digest() != digest:
        raise _Refused(f"the {size} bytes sent do not hash to the digest")
    return b"".join(chunks)


async def _fetch_from(session: aiohttp.ClientSession, address: str, digest: bytes,
                      max_bytes: int, timeout_s: float) -> bytes | None:
    if not _ADDRESS.fullmatch(address):
        log.info("blob %s: not a host:port address: %.80r", digest.hex()[:16], address)
        return None
    url = f"http://{address}/blobs/{digest.hex()}"
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, allow_redirects=False) as reply:
                return await _read_body(reply, digest, max_bytes)
    except _Refused as exc:
        log.log(exc.level, "blob %s from %s refused: %s", digest.hex()[:16], address, exc)
    except TimeoutError:
        log.info("blob %s from %s: no answer within %g s", digest.hex()[:16], address, timeout_s)
    except (aiohttp.ClientError, OSError) as exc:
        log.debug("blob %s from %s failed: %s: %s", digest.hex()[:16], address,
                  type(exc).__name__, exc)
    return None


async def fetch_blob(session: aiohttp.ClientSession, addresses: Sequence[str], digest: bytes,
                     max_bytes: int, timeout_s: float = 30) -> bytes | None:
    """The blob whose SHA-256 is digest from the first of addresses (host:port) that
    serves it whole within timeout_s and max_bytes; None if none does."""
    for address in addresses:
        data = await _fetch_from(session, address, digest, max_bytes, timeout_s)
        if data is not None:
            return data
    return None


class BlobFetcher:
    """Makes sure blobs are in the local store, fetching missing ones from peers; the
    store then serves them on, so a fetched blob has one more source."""

    def __init__(self, store: BlobStore,
                 session_factory: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession,
                 timeout_s: float = 30):
        self.store = store
        self._session_factory = session_factory
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._downloads: dict[bytes, asyncio.Task[bool]] = {}

    async def ensure(self, digest: bytes, addresses: Sequence[str], max_bytes: int) -> bool:
        """Whether the blob is in the store, after fetching it if it was not.  A call made
        while the same blob is being fetched waits for that download and gets its result.
        Raises only if the store cannot write (OSError)."""
        if self.store.has(digest.hex()):
            return True
        download = self._downloads.get(digest)
        if download is None:
            download = asyncio.create_task(self._download(digest, tuple(addresses), max_bytes))
            self._downloads[digest] = download
            download.add_done_callback(lambda _: self._downloads.pop(digest, None))
        # one caller cancelled must not cancel the download the others wait for
        return await asyncio.shield(download)

    async def _download(self, digest: bytes, addresses: tuple[str, ...], max_bytes: int) -> bool:
        if self._session is None:
            self._session = self._session_factory()
        data = await fetch_blob(self._session, addresses, digest, max_bytes, self._timeout_s)
        if data is None:
            log.info("blob %s: none of %d peers served it", digest.hex()[:16], len(addresses))
            return False
        await asyncio.to_thread(self.store.put, data)
        return True

    async def close(self) -> None:
        """Cancel the downloads under way and close the session."""
        downloads = list(self._downloads.values())
        for download in downloads:
            download.cancel()
        await asyncio.gather(*downloads, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
