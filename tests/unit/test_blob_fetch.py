"""Fetching blobs from real HTTP servers on 127.0.0.1: every way a peer can fail is
skipped over to the next address, never raised; BlobFetcher stores what it fetches,
serves it on through GET /blobs, and downloads a blob once however many ask at once."""
import asyncio
import hashlib
import socket

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from node.net.blob_fetch import BlobFetcher, fetch_blob
from node.rpc.api import NodeAPI, json_errors, rpc_routes
from node.storage.blobstore import BlobStore

pytestmark = pytest.mark.asyncio

DATA = bytes(range(256)) * 1000
DIGEST = hashlib.sha256(DATA).digest()
MAX = len(DATA)


@pytest_asyncio.fixture
async def serve():
    """serve(handler) -> "127.0.0.1:port" of a server answering every GET with handler."""
    runners = []

    async def start(handler) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)  # do not wait for a slow handler
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return "%s:%d" % runner.addresses[0][:2]
    yield start
    for runner in runners:
        await runner.cleanup()


def blob_peer(store: BlobStore) -> web.Application:
    """A node's API serving store; /blobs touches nothing else of the node."""
    app = web.Application(middlewares=[json_errors])
    app.add_routes(rpc_routes(NodeAPI(chain=None, mempool=None, metrics=None, node_status=None,
                                      on_tx=None, blobs=store, admit_fraud_proof=None)))
    return app


def closed_port_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


async def good(request):
    assert request.path == f"/blobs/{DIGEST.hex()}"
    return web.Response(body=DATA)


async def not_found(request):
    return web.json_response({"error": "no blob"}, status=404)


async def server_error(request):
    return web.Response(status=500)


async def wrong_bytes(request):
    return web.Response(body=DATA[:-1] + b"\x00")


async def too_long(request):
    return web.Response(body=DATA + b"\x00")


async def too_long_streamed(request):
    reply = web.StreamResponse()  # chunked: no Content-Length to refuse up front
    await reply.prepare(request)
    for _ in range(3):
        await reply.write(DATA)
    return reply


async def slow(request):
    await asyncio.sleep(30)
    return web.Response(body=DATA)


def redirect_to(address: str):
    async def redirect(request):
        raise web.HTTPFound(f"http://{address}{request.path}")
    return redirect


@pytest.mark.parametrize("first", [not_found, server_error, wrong_bytes, too_long,
                                   too_long_streamed, slow, "redirect", "down", "junk address"])
async def test_a_failing_peer_is_skipped(serve, session, first):
    second = await serve(good)
    if first == "redirect":  # not followed, even to a peer that has the blob
        address = await serve(redirect_to(second))
    elif first == "down":
        address = closed_port_address()
    elif first == "junk address":
        address = f"{second}/blobs/{DIGEST.hex()}?"  # a path of its own choosing
    else:
        address = await serve(first)
    assert await fetch_blob(session, [address], DIGEST, MAX, timeout_s=0.5) is None
    assert await fetch_blob(session, [address, second], DIGEST, MAX, timeout_s=0.5) == DATA


async def test_the_first_good_peer_wins(serve, session):
    requests = []

    async def counted(request):
        requests.append(request.path)
        return await good(request)
    addresses = [await serve(counted), await serve(counted)]
    assert await fetch_blob(session, addresses, DIGEST, MAX) == DATA
    assert len(requests) == 1


async def test_nobody_has_it(serve, session):
    assert await fetch_blob(session, [], DIGEST, MAX) is None
    assert await fetch_blob(session, [await serve(not_found), closed_port_address()],
                            DIGEST, MAX) is None


async def test_an_exact_size_blob_is_within_the_cap(serve, session):
    address = await serve(good)
    assert await fetch_blob(session, [address], DIGEST, len(DATA)) == DATA
    assert await fetch_blob(session, [address], DIGEST, len(DATA) - 1) is None


async def test_ensure_stores_and_serves_on(tmp_path):
    origin = BlobStore(tmp_path / "origin")
    origin.put(DATA)
    origin_runner = web.AppRunner(blob_peer(origin))
    await origin_runner.setup()
    await web.TCPSite(origin_runner, "127.0.0.1", 0).start()
    local = BlobStore(tmp_path / "local")
    fetcher = BlobFetcher(local)
    try:
        origin_address = "%s:%d" % origin_runner.addresses[0][:2]
        assert await fetcher.ensure(DIGEST, [closed_port_address(), origin_address], MAX)
        assert local.get(DIGEST.hex()) == DATA
        # the local node now serves it: a third node fetches it from there alone
        await origin_runner.cleanup()
        local_runner = web.AppRunner(blob_peer(local))
        await local_runner.setup()
        await web.TCPSite(local_runner, "127.0.0.1", 0).start()
        third = BlobFetcher(BlobStore(tmp_path / "third"), aiohttp.ClientSession)
        assert await third.ensure(DIGEST, ["%s:%d" % local_runner.addresses[0][:2]], MAX)
        await third.close()
        await local_runner.cleanup()
        # already stored: no peer needed
        assert await fetcher.ensure(DIGEST, [], MAX)
    finally:
        await fetcher.close()


async def test_ensure_without_a_source_is_false(serve, tmp_path):
    store = BlobStore(tmp_path)
    fetcher = BlobFetcher(store, aiohttp.ClientSession, timeout_s=0.5)
    assert not await fetcher.ensure(DIGEST, [await serve(wrong_bytes)], MAX)
    assert not store.has(DIGEST.hex())
    await fetcher.close()


async def test_concurrent_ensures_share_one_download(serve, tmp_path):
    release, requests = asyncio.Event(), []

    async def held(request):
        requests.append(request.path)
        await release.wait()
        return web.Response(body=DATA)
    address = await serve(held)
    fetcher = BlobFetcher(BlobStore(tmp_path), aiohttp.ClientSession)
    waiters = [asyncio.create_task(fetcher.ensure(DIGEST, [address], MAX)) for _ in range(5)]
    while not requests:
        await asyncio.sleep(0.01)
    waiters[0].cancel()  # one caller giving up does not stop the download for the others
    release.set()
    assert await asyncio.gather(*waiters[1:]) == [True] * 4
    assert requests == [f"/blobs/{DIGEST.hex()}"]
    await fetcher.close()


async def test_close_cancels_downloads_under_way(serve, tmp_path):
    store = BlobStore(tmp_path)
    fetcher = BlobFetcher(store, aiohttp.ClientSession)
    waiter = asyncio.create_task(fetcher.ensure(DIGEST, [await serve(slow)], MAX))
    await asyncio.sleep(0.2)
    await fetcher.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not store.has(DIGEST.hex())
