"""The link proxy forwards bytes both ways; cut() ends every live connection and resets
new ones until heal(); a target that is down is a reset, not a hang."""
import asyncio

import pytest

from tests.e2e.proxy import HOST, LinkProxy

pytestmark = pytest.mark.asyncio
TIMEOUT_S = 5


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the connection ends (EOF or reset) rather than carrying more bytes."""
    try:
        return await asyncio.wait_for(reader.read(1024), TIMEOUT_S) == b""
    except ConnectionError:
        return True


async def _round_trip(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.readexactly(len(data)), TIMEOUT_S)
    writer.close()
    return reply


async def test_cut_ends_live_connections_and_refuses_new_ones_until_heal():
    server = await asyncio.start_server(_echo, HOST, 0)
    proxy = LinkProxy(server.sockets[0].getsockname()[1])
    await proxy.start()
    try:
        payload = bytes(range(256)) * 1000  # more than one read's worth
        assert await _round_trip(proxy.port, payload) == payload

        reader, writer = await asyncio.open_connection(HOST, proxy.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT_S) == b"ping"
        proxy.cut()
        assert await _closed(reader)
        writer.close()

        reader, writer = await asyncio.open_connection(HOST, proxy.port)
        assert await _closed(reader)
        writer.close()

        proxy.heal()
        assert await _round_trip(proxy.port, b"back") == b"back"
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()


async def test_a_target_that_is_down_resets_the_dialer():
    server = await asyncio.start_server(_echo, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    proxy = LinkProxy(port)
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection(HOST, proxy.port)
        assert await _closed(reader)
        writer.close()
    finally:
        await proxy.close()
