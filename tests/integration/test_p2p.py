"""Peers over real aiohttp servers on 127.0.0.1: the handshake, gossip exactly once,
and bans for every kind of misbehaviour while the honest peers stay connected.

Misbehaving peers are played by a bare WebSocket client ("mallory") that speaks the
wire format by hand.  Every test stops every server, network and client it started."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web

from node.types.votes import PREVOTE, Vote, VoteBody, sign_vote
from node.types.codec import Record
from node.types.crypto import SigningKey
from node.net.p2p import InvalidPeerMessage, PeerNetwork
from node.net.p2p_protocol import Handshake, HandshakeState
from node.types.transactions import Transfer, sign_tx
from node.net.wire import (GOSSIP_TYPES, MAX_FRAME_BYTES, HelloAck, Status, TxMessage,
                       decode_message, encode_message)

CHAIN = "p2p-test"
GENESIS = bytes([0x61]) * 32
HEAD = (4, bytes([0x44]) * 32)


class Node:
    """A PeerNetwork on its own aiohttp server, recording what it is handed; it
    re-gossips what it receives, as the node does after validating."""

    def __init__(self, genesis: bytes = GENESIS, reject: type | None = None, **options):
        self.key = SigningKey(os.urandom(32))
        self.received: list[tuple[bytes, Record]] = []
        self.reject = reject  # a message type on_message refuses as invalid
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.net = PeerNetwork(self.key, CHAIN, genesis, self.address, lambda: HEAD,
                               self.on_message, **options)
        self.runner: web.AppRunner | None = None

    async def on_message(self, peer_key: bytes, message: Record) -> None:
        if self.reject is not None and isinstance(message, self.reject):
            raise InvalidPeerMessage("refused by the test")
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
