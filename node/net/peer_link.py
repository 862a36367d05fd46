"""One peer connection's plumbing beneath the protocol rules (node.net.p2p runs one per
peer): reading its frames within its rate and their caps, decoding large ones off the
event loop, and the bounded send queue with the task that writes it, so that a slow
peer never blocks the node."""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from node.types.codec import DecodeError, Record
from node.net.p2p_protocol import PeerRate
from node.net.wire import MAX_FRAME_BYTES, check_frame_size, decode_message

# A peer this far behind on reading is dropped: room for a few frames at the cap (a
# proposal, block-sync answers of half a frame) besides the gossip, and with at most
# MAX_CONNECTIONS peers a bound on what all the queues together may hold.
SEND_QUEUE_BYTES = 32 * 1024 * 1024
CLOSE_REASON_BYTES = 120  # a WebSocket close reason holds at most 123 bytes
# Decoding runs at roughly 10 MB/s: a frame this small holds the loop for a few tens of
# milliseconds at most, a larger one (up to a second at the frame cap) goes to a thread.
DECODE_INLINE_BYTES = 256 * 1024
# Large frames waiting for that thread, all peers together: each waits in memory, so
# without a bound the node's memory grew with the number of peers sending them
# (+1 GiB from 64 connections sending maximum-size frames).
MAX_WAITING_BYTES = 4 * MAX_FRAME_BYTES

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


@dataclasses.dataclass
class ConnectionOutcome:
    """How one connection ended, for the dial loop."""
    reason: str
    peer_key: bytes | None = None
    served: bool = False  # it got past the handshake and was a peer for a while
    self_connection: bool = False


class Disconnect(Exception):
    """Ends one connection; str() is the one-line reason, ban what to ban for it."""

    def __init__(self, reason: str, ban: bytes | str | None = None):
        super().__init__(reason)
        self.ban = ban


async def receive_frame(ws: Socket, rate: PeerRate, ban: bytes | str) -> bytes | None:
    """The next binary frame within the peer's rate; None once we closed the socket."""
    msg = await ws.receive()
    if msg.type is WSMsgType.CLOSE:
        raise Disconnect(f"closed by the peer ({msg.extra})" if msg.extra else "closed by the peer")
    if msg.type is WSMsgType.ERROR and isinstance(msg.data, aiohttp.WebSocketError) \
            and msg.data.code == WSCloseCode.MESSAGE_TOO_BIG:
        raise Disconnect(f"frame over the cap of {MAX_FRAME_BYTES} bytes", ban=ban)
    if msg.type is WSMsgType.TEXT:
        raise Disconnect("text frame", ban=ban)
    if msg.type is not WSMsgType.BINARY:
        return None
    if not rate.allow(asyncio.get_running_loop().time(), len(msg.data)):
        raise Disconnect("flooding: over its message rate", ban=ban)
    return msg.data


def frame_type(frame: bytes, ban: bytes | str) -> type[Record]:
    """The type frame's tag names, refused unread if the frame is over that type's cap."""
    try:
        return check_frame_size(frame)
    except DecodeError as exc:
        raise Disconnect(f"undecodable frame: {exc}", ban=ban) from None


class FrameDecoder:
    """Decodes peer frames: small ones at once, large ones on one worker thread, so the
    event loop keeps its timers while a frame at the cap decodes, and at most one such
    decode (of all the peers') runs at a time.  When MAX_WAITING_BYTES of large frames
    already wait, the peer that brings another is dropped (not banned: an honest peer
    relaying a big proposal may meet a flood); it redials, and gets what it lacks again."""

    def __init__(self, max_waiting_bytes: int = MAX_WAITING_BYTES) -> None:
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="p2p decode")
        self.max_waiting_bytes = max_waiting_bytes
        self.waiting_bytes = 0

    async def decode(self, frame: bytes, ban: bytes | str) -> Record:
        try:
            if len(frame) <= DECODE_INLINE_BYTES:
                return decode_message(frame)
            if self.waiting_bytes + len(frame) > self.max_waiting_bytes:
                raise Disconnect(f"busy: {self.waiting_bytes} bytes of large frames wait to be decoded")
            self.waiting_bytes += len(frame)
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._worker, decode_message, frame)
            finally:
                self.waiting_bytes -= len(frame)
        except DecodeError as exc:
            raise Disconnect(f"undecodable frame: {exc}", ban=ban) from None

    async def close(self) -> None:
        """Wait, off the loop, for a decode a cancelled connection may have left running."""
        await asyncio.to_thread(self._worker.shutdown, cancel_futures=True)


@dataclasses.dataclass
class PeerLink:
    key: bytes
    address: str  # where it says it accepts peers
    ws: Socket
    outbound: bool
    queue: asyncio.Queue[bytes] = dataclasses.field(default_factory=asyncio.Queue)
    queued_bytes: int = 0
    closed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    close_reason: str | None = None  # set when we decide to close it

    def enqueue(self, frame: bytes) -> bool:
        """Queue frame for the writer; False if the link is closing or now too slow."""
        if self.close_reason is not None:
            return False
        if self.queued_bytes + len(frame) > SEND_QUEUE_BYTES:
            # It cannot keep up; the writer closes it after the frame in flight.
            self.close_reason = "too slow: send queue full"
            return False
        self.queue.put_nowait(frame)
        self.queued_bytes += len(frame)
        return True

    async def write(self) -> None:
        """Send queued frames until the link is to close, then close it with the reason."""
        try:
            while self.close_reason is None:
                frame = await self.queue.get()
                await self.ws.send_bytes(frame)
                self.queued_bytes -= len(frame)
        except (ConnectionError, aiohttp.ClientError) as exc:
            self.close_reason = f"send failed ({exc})"
        await self.ws.close(code=WSCloseCode.OK,
                            message=self.close_reason.encode()[:CLOSE_REASON_BYTES])
