"""One TCP proxy per directed peer link: node i dials node j at proxy(i→j)'s port, which
forwards to j's real port, so the runner can cut and heal that link.

Cutting aborts every live connection (both sockets reset at once, as a dead link
would eventually look to the nodes, but without waiting for their heartbeats) and
resets each new one until heal().  Bytes are forwarded untouched: the proxy knows
nothing of the peer protocol.
"""
from __future__ import annotations

import asyncio

HOST = "127.0.0.1"
CHUNK = 64 * 1024


class LinkProxy:
    """Forwards connections made to its port (picked by the OS) to target_port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0  # set by start()
        self.is_cut = False
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1; returns it."""
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self) -> None:
        """Reset every live connection and every new one until heal()."""
        self.is_cut = True
        for writer in list(self._live):
            writer.transport.abort()

    def heal(self) -> None:
        self.is_cut = False

    async def close(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.is_cut:
                client_writer.transport.abort()
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.target_port)
            except OSError:  # the target is down (killed, restarting): the dialer sees a reset
                client_writer.transport.abort()
                return
            if self.is_cut:  # cut while we were connecting
                client_writer.transport.abort()
                upstream_writer.transport.abort()
                return
            pair = (client_writer, upstream_writer)
            self._live.update(pair)
            try:
                await asyncio.gather(_pump(client_reader, upstream_writer),
                                     _pump(upstream_reader, client_writer))
            finally:
                self._live.difference_update(pair)
                for writer in pair:
                    writer.close()
        finally:
            self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy reader to writer until EOF, then pass the EOF on (a half close)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()  # a stopped (SIGSTOP) receiver pushes back, not our memory
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()  # the other side of a reset link is reset too
