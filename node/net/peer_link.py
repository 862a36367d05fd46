"""One established peer connection's outgoing side: a bounded send queue and the task
that writes it, so that a slow peer never blocks the node (node.net.p2p runs one per
peer)."""
from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
from aiohttp import WSCloseCode, web

SEND_QUEUE_BYTES = 64 * 1024 * 1024  # a peer this far behind on reading is dropped
CLOSE_REASON_BYTES = 120  # a WebSocket close reason holds at most 123 bytes

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


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
