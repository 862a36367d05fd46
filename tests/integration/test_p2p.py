"""Peers over real aiohttp servers on 127.0.0.1: the handshake, gossip exactly once,
bans for every kind of misbehaviour while the honest peers stay connected, per-host
connection limits, and an event loop that keeps its timers while a large frame decodes.

Misbehaving peers are played by a bare WebSocket client ("mallory") that speaks the
wire format by hand.  Every test stops every server, network and client it started."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from typing import Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web

from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader
from node.types.votes import PREVOTE, Vote, VoteBody, sign_vote
from node.types.codec import Record
from node.types.crypto import SigningKey
from node.net import failure_log
from node.net.p2p import InvalidPeerMessage, PeerNetwork
from node.net.p2p_protocol import (HOST_CONNECT_BURST, HOST_CONNECTIONS, HOST_CONNECTS_PER_S,
                                   TRUSTED_HOST_CONNECTIONS, Handshake, HandshakeState)
from node.types.transactions import Transfer, sign_tx
from node.net.wire import (FRAME_CAPS, GOSSIP_TYPES, MAX_FRAME_BYTES, Blocks, BlockWithCommit,
                           GetBlocks, HelloAck, Status, TxMessage, decode_message, encode_message)

CHAIN = "p2p-test"
GENESIS = bytes([0x61]) * 32
HEAD = (4, bytes([0x44]) * 32)


class Node:
    """A PeerNetwork on its own aiohttp server, recording what it is handed; it
    re-gossips what it receives, as the node does after validating."""

    def __init__(self, genesis: bytes = GENESIS, reject: type | None = None,
                 fail: type | None = None, **options):
        self.key = SigningKey(os.urandom(32))
        self.received: list[tuple[bytes, Record]] = []
        self.reject = reject  # a message type on_message refuses as invalid
        self.fail = fail  # a message type on_message fails on, as a node with a bug would
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.net = PeerNetwork(self.key, CHAIN, genesis, self.address, lambda: HEAD,
                               self.on_message, **options)
        self.runner: web.AppRunner | None = None

    async def on_message(self, peer_key: bytes, message: Record) -> None:
        if self.reject is not None and isinstance(message, self.reject):
            raise InvalidPeerMessage("refused by the test")
        if self.fail is not None and isinstance(message, self.fail):
            raise RuntimeError("broken here\nand a second line")
        self.received.append((peer_key, message))
        if isinstance(message, GOSSIP_TYPES):
            self.net.broadcast(message, exclude=peer_key)

    async def start(self) -> "Node":
        app = web.Application()
        app.add_routes(self.net.routes())
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()
        return self

    async def stop(self) -> None:
        await self.net.close()
        if self.runner is not None:
            await self.runner.cleanup()
        self.sock.close()

    def peer_keys(self) -> set[str]:
        return {key for key, _ in self.net.peers()}

    def got(self, cls: type) -> list[Record]:
        return [m for _, m in self.received if isinstance(m, cls)]


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def mesh(nodes: list[Node]) -> None:
    """Each node dials every node started before it; wait until all are connected."""
    for i, node in enumerate(nodes):
        for other in nodes[:i]:
            await node.net.connect(other.address)
    await wait_for(lambda: all(len(n.net.peers()) == len(nodes) - 1 for n in nodes))


@pytest_asyncio.fixture
async def started():
    """start(**options) -> a running Node; all of them are stopped afterwards."""
    nodes: list[Node] = []

    async def start(**options) -> Node:
        node = Node(**options)
        nodes.append(node)
        return await node.start()

    yield start
    for node in nodes:
        await node.stop()


async def dial(session: aiohttp.ClientSession, node: Node) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(f"http://{node.address}/p2p", max_msg_size=0)


async def handshake_as(ws: aiohttp.ClientWebSocketResponse, key: SigningKey) -> None:
    """Complete an honest handshake by hand."""
    handshake = Handshake(key, CHAIN, GENESIS, "127.0.0.1:9", 0, os.urandom(32))
    await ws.send_bytes(encode_message(handshake.start()))
    while handshake.state is not HandshakeState.ESTABLISHED:
        msg = await ws.receive(timeout=5)
        for reply in handshake.receive(decode_message(msg.data)):
            await ws.send_bytes(encode_message(reply))


async def close_reason(ws: aiohttp.ClientWebSocketResponse) -> str:
    """Read until the node closes the socket; its one-line reason."""
    async with asyncio.timeout(5):
        while (msg := await ws.receive()).type is WSMsgType.BINARY:
            pass
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
    return msg.extra or ""


async def assert_host_banned(session: aiohttp.ClientSession, node: Node) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await dial(session, node)
    assert info.value.status == 403


async def assert_key_banned(session: aiohttp.ClientSession, node: Node, key: SigningKey) -> None:
    """The key is refused when it comes back, before the node answers its Hello."""
    ws = await dial(session, node)
    hello = Handshake(key, CHAIN, GENESIS, "127.0.0.1:9", 0, os.urandom(32)).start()
    await ws.send_bytes(encode_message(hello))
    assert await close_reason(ws) == "banned"


def vote(key: SigningKey, height: int = 1) -> Vote:
    return sign_vote(key, CHAIN, VoteBody(PREVOTE, height, 0, bytes(32)))


@pytest.mark.asyncio
async def test_three_nodes_gossip_a_vote_to_all_exactly_once(started):
    nodes = [await started() for _ in range(3)]
    await mesh(nodes)
    assert all(n.got(Status) for n in nodes)  # each peer announces its head on connecting
    assert nodes[0].net.peers() == sorted((n.key.public_key.hex(), n.address) for n in nodes[1:])

    sent = vote(nodes[0].key)
    assert nodes[0].net.broadcast(sent) == 2
    await wait_for(lambda: all(n.got(Vote) for n in nodes[1:]))
    await asyncio.sleep(0.3)  # time for the relayed copies to arrive, and be dropped
    assert [len(n.got(Vote)) for n in nodes] == [0, 1, 1]
    assert all(n.got(Vote) == [sent] for n in nodes[1:])


@pytest.mark.asyncio
async def test_gossip_relays_across_a_line(started):
    a, b, c = [await started() for _ in range(3)]
    await b.net.connect(a.address)
    await c.net.connect(b.address)
    await wait_for(lambda: len(b.net.peers()) == 2)
    assert b.net.send(c.key.public_key, Status(9, bytes(32)))
    a.net.broadcast(vote(a.key))
    await wait_for(lambda: c.got(Vote))
    assert c.received[0][0] == b.key.public_key  # it came through b
    assert Status(9, bytes(32)) in c.got(Status)


@pytest.mark.asyncio
async def test_a_peer_on_another_genesis_is_refused_and_redialed_quietly(started, caplog):
    honest = await started()
    stranger = await started(genesis=bytes(32))
    with caplog.at_level(logging.DEBUG, logger="node.net.p2p"):
        await stranger.net.connect(honest.address)
        await asyncio.sleep(1.8)  # three attempts: at 0, 0.5 and 1.5 s
    assert honest.net.peers() == [] and stranger.net.peers() == []
    refused = [r for r in caplog.records if "genesis" in r.getMessage()
               and r.getMessage().startswith(f"peer {honest.address}")]
    assert len(refused) >= 2
    assert [r.levelno for r in refused].count(logging.WARNING) == 1


@pytest.mark.asyncio
async def test_a_peer_that_is_down_is_dialed_until_it_is_up(started):
    waiting = await started()
    late = Node()
    await waiting.net.connect(late.address)
    await asyncio.sleep(0.7)
    try:
        await late.start()
        await wait_for(lambda: late.peer_keys() == {waiting.key.public_key.hex()})
    finally:
        await late.stop()
    await wait_for(lambda: waiting.net.peers() == [])


@pytest.mark.asyncio
async def test_nodes_dialing_each_other_keep_one_connection(started):
    a, b = await started(), await started()
    await a.net.connect(b.address)
    await b.net.connect(a.address)
    await wait_for(lambda: len(a.net.peers()) == len(b.net.peers()) == 1)
    await asyncio.sleep(0.8)  # past a redial: the pair stays connected, once
    assert len(a.net.peers()) == len(b.net.peers()) == 1
    a.net.broadcast(vote(a.key))
    await wait_for(lambda: b.got(Vote))


@pytest.mark.asyncio
async def test_a_node_dialing_itself_gives_up(started, caplog):
    node = await started()
    with caplog.at_level(logging.WARNING, logger="node.net.p2p"):
        await node.net.connect(node.address)
        await wait_for(lambda: any("this node itself" in r.getMessage() for r in caplog.records))
    assert node.net.peers() == []


async def honest_pair(started) -> tuple[Node, Node, Node]:
    """A target with two honest peers connected."""
    target = await started(rate_per_s=50, burst=100, reject=TxMessage)
    honest = [await started(), await started()]
    await mesh([target, *honest])
    return target, honest[0], honest[1]


async def assert_honest_still_served(target: Node, honest: list[Node]) -> None:
    assert {n.key.public_key.hex() for n in honest} <= target.peer_keys()
    sent = vote(honest[0].key, height=77)
    honest[0].net.broadcast(sent)
    await wait_for(lambda: sent in target.got(Vote) and sent in honest[1].got(Vote))


@pytest.mark.asyncio
async def test_garbage_before_the_handshake_bans_the_host(started, session):
    target, *honest = await honest_pair(started)
    ws = await dial(session, target)
    await ws.send_bytes(b"\xff garbage")
    assert "undecodable frame" in await close_reason(ws)
    await assert_host_banned(session, target)
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_garbage_from_a_configured_peer_host_drops_the_connection_but_bans_no_host(started, session):
    """The accidental loopback partition: on a devnet every peer is 127.0.0.1, and one
    bad frame banning the host would cut the node off from all of them."""
    target = await started(trusted_hosts=frozenset({"127.0.0.1"}))
    honest = [await started() for _ in range(2)]
    ws = await dial(session, target)
    await ws.send_bytes(b"\xff garbage")
    assert "undecodable frame" in await close_reason(ws)
    await mesh([target, *honest])  # 127.0.0.1 is still served: the others connect
    # a key that misbehaves after the handshake is still banned, by key
    cheat = SigningKey(os.urandom(32))
    ws = await dial(session, target)
    await handshake_as(ws, cheat)
    await ws.send_bytes(b"\xff garbage")
    await close_reason(ws)
    ws = await dial(session, target)  # the host is let in again...
    hello = Handshake(cheat, CHAIN, GENESIS, "127.0.0.1:9", 0, os.urandom(32)).start()
    await ws.send_bytes(encode_message(hello))
    assert await close_reason(ws) == "banned"  # ...but not the key


@pytest.mark.asyncio
async def test_an_oversize_frame_bans_the_host(started, session, caplog):
    target, *honest = await honest_pair(started)
    ws = await dial(session, target)
    with contextlib.suppress(ConnectionError):  # refused by its header, the rest unread
        await ws.send_bytes(bytes(MAX_FRAME_BYTES + 1))
    await close_reason(ws)
    await assert_host_banned(session, target)
    assert any("frame over the cap" in r.getMessage() for r in caplog.records)
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_a_bad_handshake_signature_bans_the_host(started, session):
    target, *honest = await honest_pair(started)
    ws = await dial(session, target)
    mallory = Handshake(SigningKey(os.urandom(32)), CHAIN, GENESIS, "127.0.0.1:9", 0,
                        os.urandom(32))
    await ws.send_bytes(encode_message(mallory.start()))
    await ws.send_bytes(encode_message(HelloAck(bytes(64))))
    assert await close_reason(ws) == "bad handshake signature"
    await assert_host_banned(session, target)
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_a_flood_bans_the_peer_key(started, session):
    target, *honest = await honest_pair(started)
    key = SigningKey(os.urandom(32))
    ws = await dial(session, target)
    await handshake_as(ws, key)
    await wait_for(lambda: key.public_key.hex() in target.peer_keys())
    flood = encode_message(vote(key))
    with contextlib.suppress(ConnectionError):  # closed on us mid-flood
        for _ in range(300):  # the target allows bursts of 100
            await ws.send_bytes(flood)
    assert "flooding" in await close_reason(ws)
    assert key.public_key.hex() not in target.peer_keys()
    await assert_honest_still_served(target, honest)
    # the key stays banned when it comes back: refused before the target answers
    ws = await dial(session, target)
    hello = Handshake(key, CHAIN, GENESIS, "127.0.0.1:9", 0, os.urandom(32)).start()
    await ws.send_bytes(encode_message(hello))
    assert await close_reason(ws) == "banned"


@pytest.mark.asyncio
async def test_garbage_after_the_handshake_bans_the_peer_key(started, session):
    target, *honest = await honest_pair(started)
    ws = await dial(session, target)
    await handshake_as(ws, SigningKey(os.urandom(32)))
    await ws.send_bytes(encode_message(Status(1, bytes(32)))[:-1])
    assert "undecodable frame" in await close_reason(ws)
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_a_message_the_node_finds_invalid_bans_the_peer(started, session):
    target, *honest = await honest_pair(started)  # its on_message refuses every transaction
    key = SigningKey(os.urandom(32))
    ws = await dial(session, target)
    await handshake_as(ws, key)
    await ws.send_bytes(encode_message(TxMessage(sign_tx(key, CHAIN, 0,
                                                        Transfer(key.public_key, 1), 0))))
    assert await close_reason(ws) == "invalid TxMessage: refused by the test"
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_a_failure_of_the_node_s_own_is_logged_once_then_counted_and_bans_nobody(
        started, session, caplog, monkeypatch):
    # seen on a GPU node whose numba-cuda could not compile: every synced block failed,
    # and the log took a traceback a second
    target = await started(fail=TxMessage)
    key = SigningKey(os.urandom(32))
    ws = await dial(session, target)
    await handshake_as(ws, key)

    async def send_txs(nonces: range) -> None:
        for nonce in nonces:
            await ws.send_bytes(encode_message(TxMessage(sign_tx(key, CHAIN, nonce,
                                                                Transfer(key.public_key, 1), 0))))
        await ws.send_bytes(encode_message(vote(key, height=nonces.stop)))  # handled after them
        await wait_for(lambda: len(target.got(Vote)) == nonces.stop // 5)

    def failures() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("handling TxMessage")]

    with caplog.at_level(logging.ERROR, logger="node.net.p2p"):
        await send_txs(range(0, 5))
        [first] = failures()
        assert first.exc_info is not None and "broken here" in str(first.exc_info[1])
        monkeypatch.setattr(failure_log, "FAILURE_LOG_PERIOD_S", 0.0)
        await send_txs(range(5, 10))
    counted = failures()[1]
    assert counted.exc_info is None
    assert counted.getMessage().startswith("handling TxMessage failed 5 more times in ")
    assert counted.getMessage().endswith(": RuntimeError: broken here")
    assert key.public_key.hex() in target.peer_keys()  # a bug of the node's own bans no peer


@pytest.mark.asyncio
async def test_a_hello_after_the_handshake_bans_the_peer(started, session):
    target, *honest = await honest_pair(started)
    key = SigningKey(os.urandom(32))
    ws = await dial(session, target)
    await handshake_as(ws, key)
    await ws.send_bytes(encode_message(Handshake(key, CHAIN, GENESIS, "127.0.0.1:9", 0,
                                                 os.urandom(32)).start()))
    assert await close_reason(ws) == "Hello after the handshake"
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_a_peer_reconnecting_replaces_its_old_connection(started, session):
    target = await started()
    key = SigningKey(os.urandom(32))
    old, new = await dial(session, target), await dial(session, target)
    await handshake_as(old, key)
    await handshake_as(new, key)
    assert await close_reason(old) == "duplicate connection"
    sent = vote(key, height=5)
    await new.send_bytes(encode_message(sent))
    await wait_for(lambda: sent in target.got(Vote))
    assert target.net.peers() == [(key.public_key.hex(), "127.0.0.1:9")]


@pytest.mark.asyncio
async def test_the_node_hears_of_every_new_connection_replacements_too(started, session):
    """What was queued on a replaced connection may be lost: the node is told, and can
    send the peer what it needs again (consensus re-gossips on connect)."""
    connected: list[bytes] = []
    target = await started(on_connect=connected.append)
    key = SigningKey(os.urandom(32))
    first = await dial(session, target)
    await handshake_as(first, key)
    await wait_for(lambda: connected == [key.public_key])
    assert target.net.peer_keys() == [key.public_key]
    second = await dial(session, target)
    await handshake_as(second, key)
    await wait_for(lambda: connected == [key.public_key] * 2)
    await first.close()
    await second.close()


@pytest.mark.asyncio
async def test_a_silent_peer_times_out_without_a_ban(started, session):
    target = await started(handshake_timeout=0.3)
    ws = await dial(session, target)
    assert await close_reason(ws) == "handshake timed out"
    ws = await dial(session, target)  # not banned: it may try again
    await handshake_as(ws, SigningKey(os.urandom(32)))
    await ws.close()


async def established(session: aiohttp.ClientSession, node: Node) -> tuple[
        aiohttp.ClientWebSocketResponse, SigningKey]:
    """A bare client connected to node under a fresh key, once node counts it a peer."""
    key = SigningKey(os.urandom(32))
    ws = await dial(session, node)
    await handshake_as(ws, key)
    await wait_for(lambda: key.public_key in node.net.peer_keys())
    return ws, key


async def receive_until(ws: aiohttp.ClientWebSocketResponse, cls: type) -> Record:
    """The first message of type cls the node sends, skipping the others."""
    async with asyncio.timeout(5):
        while not isinstance(message := decode_message((await ws.receive()).data), cls):
            pass
    return message


def blocks_near_the_cap() -> Blocks:
    """A Blocks answer just under the frame cap, all small transactions: the slowest kind
    of frame to decode (most of a second, or more on a slow machine)."""
    key = SigningKey(bytes([3]) * 32)
    tx = sign_tx(key, CHAIN, 0, Transfer(key.public_key, 1), 0)
    header = BlockHeader(chain_id=CHAIN, height=1, round=0, time_ms=1, prev_hash=bytes(32),
                         last_commit_hash=EMPTY_COMMIT.hash, tx_root=bytes(32),
                         close_hash=bytes(32), state_root=bytes(32), proposer=key.public_key)
    count = (MAX_FRAME_BYTES - 4096) // len(tx.encode())
    block = Block(header=header, txs=(tx,) * count, last_commit=EMPTY_COMMIT)
    return Blocks((BlockWithCommit(block, EMPTY_COMMIT),))


@pytest.mark.asyncio
async def test_a_frame_over_its_types_cap_bans_the_peer_key(started, session):
    target, *honest = await honest_pair(started)
    ws, key = await established(session, target)
    frame = encode_message(vote(key)) + bytes(1000)  # a vote of a kilobyte
    await ws.send_bytes(frame)
    assert await close_reason(ws) == (f"undecodable frame: Vote frame of {len(frame)} bytes "
                                      f"exceeds the cap of {FRAME_CAPS[Vote]}")
    await assert_key_banned(session, target, key)
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_a_non_handshake_frame_during_the_handshake_bans_the_host(started, session):
    target, *honest = await honest_pair(started)
    ws = await dial(session, target)
    await ws.send_bytes(bytes([8]) + bytes(1000))  # a Blocks tag: refused by the tag alone
    assert await close_reason(ws) == "Blocks during the handshake"
    await assert_host_banned(session, target)
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_unrequested_blocks_ban_the_peer_before_decoding(started, session):
    target, *honest = await honest_pair(started)
    ws, key = await established(session, target)
    await ws.send_bytes(bytes([8]) + b"not even a Blocks record")
    assert await close_reason(ws) == "unrequested Blocks"  # not "undecodable": unread
    assert target.got(Blocks) == []
    await assert_key_banned(session, target, key)
    await assert_honest_still_served(target, honest)


@pytest.mark.asyncio
async def test_each_get_blocks_earns_one_blocks_answer(started, session):
    target = await started()
    ws, key = await established(session, target)
    assert target.net.send(key.public_key, GetBlocks(1, 1))
    assert await receive_until(ws, GetBlocks) == GetBlocks(1, 1)
    await ws.send_bytes(encode_message(Blocks(())))
    await wait_for(lambda: target.got(Blocks) == [Blocks(())])
    await ws.send_bytes(encode_message(Blocks(())))  # a second answer to one request
    assert await close_reason(ws) == "unrequested Blocks"
    assert target.got(Blocks) == [Blocks(())]


@pytest.mark.asyncio
async def test_the_loop_keeps_its_timers_while_a_frame_at_the_cap_decodes(started, session):
    """A maximum-size frame takes most of a second to decode: on the event loop, it
    would hold back every timer (heartbeats, handshake and consensus timeouts) as long."""
    target = await started()
    ws, key = await established(session, target)
    assert target.net.send(key.public_key, GetBlocks(1, 1))
    sent = blocks_near_the_cap()
    frame = encode_message(sent)
    loop = asyncio.get_running_loop()
    lateness: list[float] = []

    async def tick() -> None:
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            lateness.append(loop.time() - start - 0.01)

    # The collector's pauses (longer the more the whole test run holds) stop the loop
    # wherever they fall; what is measured here is what the decode itself does to it.
    gc.disable()
    ticker = asyncio.create_task(tick())
    began = loop.time()
    try:
        await ws.send_bytes(frame)
        await wait_for(lambda: target.got(Blocks), timeout=120)
    finally:
        ticker.cancel()
        gc.enable()
    took = loop.time() - began
    assert len(target.got(Blocks)[0].items[0].block.txs) == len(sent.items[0].block.txs)
    # Decoded inline, one timer would be late by nearly all of `took`; decoded on a
    # worker thread, the loop waits only for its turn at the GIL, a few ms at a time.
    # A bound relative to `took` holds on a slow or busy machine as well.
    assert max(lateness) < took / 4, f"a timer {max(lateness):.3f} s late in {took:.3f} s"


@pytest.mark.asyncio
async def test_an_untrusted_host_holds_only_a_few_connections(started, session):
    target = await started()
    held = [await dial(session, target) for _ in range(HOST_CONNECTIONS)]
    async with session.get(f"http://{target.address}/p2p") as response:
        assert response.status == 503
        assert await response.text() == f"{HOST_CONNECTIONS} connections from 127.0.0.1 already"
    await held[0].close()
    async with asyncio.timeout(5):  # the slot is free again, once a new one may be opened
        while (await session.get(f"http://{target.address}/p2p")).status != 400:
            await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_fresh_connections_from_an_untrusted_host_are_throttled(started, session):
    """So that a host whose keys get banned cannot come back with a fresh key per
    connection at line rate."""
    target = await started()
    began = asyncio.get_running_loop().time()
    answers = []
    for _ in range(30):
        async with session.get(f"http://{target.address}/p2p") as response:
            answers.append((response.status, await response.text()))
    took = asyncio.get_running_loop().time() - began
    admitted = sum(status == 400 for status, _ in answers)  # not a WebSocket: let in, then refused
    assert HOST_CONNECT_BURST <= admitted <= HOST_CONNECT_BURST + HOST_CONNECTS_PER_S * took + 1
    assert (503, "too many new connections from 127.0.0.1; try again later") in answers


@pytest.mark.asyncio
async def test_a_trusted_host_holds_many_connections_and_opens_them_fast(started, session):
    """On a devnet every peer is 127.0.0.1: the untrusted limits would cut them off."""
    target = await started(trusted_hosts=frozenset({"127.0.0.1"}))
    held = [await dial(session, target) for _ in range(2 * HOST_CONNECTIONS)]
    assert all(not ws.closed for ws in held)
    for _ in range(TRUSTED_HOST_CONNECTIONS - 2 * HOST_CONNECTIONS):
        async with session.get(f"http://{target.address}/p2p") as response:
            assert response.status == 400  # let in: only then refused as no WebSocket
