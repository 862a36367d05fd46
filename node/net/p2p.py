"""Peers over WebSocket: the handshake, per-peer limits and bans, and gossip.

Every node serves GET /p2p on its aiohttp app and dials the peers it is configured
with; once the handshake has proven who is on the other end, both directions are
the same.  Each connection is one task that reads frames (rate limit, the cap of the
type the tag names, strict decode) and hands messages to the node, plus one task that
writes the peer's queued frames, so a slow peer never blocks the node.  Each host may
hold only a few inbound connections and open new ones only so fast; a Blocks frame is
accepted only as the answer to a GetBlocks we sent.  The protocol rules themselves live
in node.net.p2p_protocol, free of I/O; node.net.peer_link reads, decodes (large frames
off the event loop) and writes one connection's frames.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Awaitable, Callable

import aiohttp
from aiohttp import WSCloseCode, web

from node.types.codec import Record
from node.types.crypto import SigningKey
from node.net.failure_log import FailureLog
from node.net.p2p_protocol import (BanList, Handshake, HandshakeError, HandshakeState, HostLimits,
                                   PeerRate, Requests, SeenCache, SelfConnection, backoff_delay,
                                   parse_address)
from node.net.peer_link import (CLOSE_REASON_BYTES, ConnectionOutcome, Disconnect, FrameDecoder, PeerLink,
                                Socket, frame_type, receive_frame)
from node.net.wire import (GOSSIP_TYPES, HANDSHAKE_TYPES, MAX_FRAME_BYTES, Blocks, GetBlocks, Hello,
                           Status, encode_message, message_id)

log = logging.getLogger(__name__)

P2P_PATH = "/p2p"
HANDSHAKE_TIMEOUT_S = 5.0
BAN_SECONDS = 60.0
RATE_PER_S = 5000.0  # honest gossip of 1,000+ tx/s crosses every link
BURST = 20000.0
BYTES_PER_S = 16 * 1024 * 1024
BYTE_BURST = 8 * MAX_FRAME_BYTES  # a block-sync answer or two at full size
MAX_CONNECTIONS = 128  # handshaking and established together
HEARTBEAT_S = 20.0  # pings that notice a peer gone without a close
CLOSE_TIMEOUT_S = 2.0
# aiohttp refuses a frame whose size is >= max_msg_size; +1 lets a frame of exactly
# MAX_FRAME_BYTES through; each type's own cap is checked on the tag before decoding.
WS_MAX_MSG_SIZE = MAX_FRAME_BYTES + 1

Head = Callable[[], tuple[int, bytes]]
MessageHandler = Callable[[bytes, Record], Awaitable[None]]
PeerConnected = Callable[[bytes], None]
Traffic = Callable[[str, str, int], None]  # ("in" or "out", message type, frame bytes)


def _uncounted(direction: str, kind: str, size: int) -> None:
    pass


class InvalidPeerMessage(Exception):
    """Raised by the node's on_message for a message no honest peer sends (a bad
    signature, a block that does not verify): the peer is banned and dropped."""


class PeerNetwork:
    """The node's peers: accepts them on routes(), dials them with connect(), tells
    on_connect(peer_key) of every new connection (what was sent on an older one may be
    lost) and delivers their messages to on_message(peer_key, message)."""

    def __init__(self, key: SigningKey, chain_id: str, genesis_hash: bytes, listen_address: str,
                 head: Head, on_message: MessageHandler, *,
                 on_connect: PeerConnected | None = None, on_traffic: Traffic = _uncounted,
                 on_ban: Callable[[], None] = lambda: None, trusted_hosts: frozenset[str] = frozenset(),
                 handshake_timeout: float = HANDSHAKE_TIMEOUT_S, ban_seconds: float = BAN_SECONDS,
                 rate_per_s: float = RATE_PER_S, burst: float = BURST):
        parse_address(listen_address)
        # Whatever our Hello cannot carry is refused now, not on the first connection.
        Hello(chain_id, genesis_hash, key.public_key, listen_address, 0, bytes(32)).validate()
        self.key = key
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.listen_address = listen_address
        self.handshake_timeout = handshake_timeout
        self.ban_seconds = ban_seconds
        # the hosts of the peers the operator configured: never banned by host, since one
        # bad connection from a shared host (a devnet's 127.0.0.1) would cut off the rest;
        # a misbehaving key from there is still banned, and its connection dropped
        self.trusted_hosts = trusted_hosts
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._head = head
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_traffic, self._on_ban = on_traffic, on_ban
        self._peers: dict[bytes, PeerLink] = {}
        self._sockets: set[Socket] = set()
        self._inbound_tasks: set[asyncio.Task] = set()
        self._dials: dict[str, asyncio.Task] = {}
        self._bans = BanList()
        self._hosts = HostLimits(trusted_hosts)
        self._requests = Requests()
        self._seen = SeenCache()
        self._decoding: set[bytes] = set()  # ids of gossip frames being decoded now
        self._decoder = FrameDecoder()
        self._failures = FailureLog(log)
        self._session: aiohttp.ClientSession | None = None
        self._closing = False

    # --- the node's interface -------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get(P2P_PATH, self._accept)]

    async def connect(self, address: str) -> None:
        """Keep a connection to the peer at "host:port", redialing with backoff whenever
        it is down; returns at once.  ValueError if address is not host:port."""
        parse_address(address)
        if self._closing or address in self._dials:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._dials[address] = asyncio.create_task(self._dial(address),
                                                   name=f"p2p dial {address}")

    def broadcast(self, message: Record, exclude: bytes | None = None) -> int:
        """Queue message to every established peer but exclude (the one it came from);
        marks it seen so copies gossiped back are dropped.  Returns how many peers."""
        frame = encode_message(message)
        if isinstance(message, GOSSIP_TYPES):
            self._seen.add(message_id(frame), self._now())
        return sum(self._enqueue(peer, frame, message) for peer in list(self._peers.values())
                   if peer.key != exclude)

    def send(self, peer_key: bytes, message: Record) -> bool:
        """Queue message to one peer; False if it is not connected."""
        peer = self._peers.get(peer_key)
        return peer is not None and self._enqueue(peer, encode_message(message), message)

    def dialing(self) -> set[str]:
        """The addresses this node keeps dialing (connected or not)."""
        return set(self._dials)

    def forget(self, address: str) -> None:
        """Stop dialing address, and drop the connection dialed there if there is one."""
        if (task := self._dials.pop(address, None)) is not None:
            task.cancel()

    def peer_keys(self) -> list[bytes]:
        """The public keys of every established peer."""
        return list(self._peers)

    def peers(self) -> list[tuple[str, str]]:
        """(public key hex, advertised address) of every established peer."""
        return [(key.hex(), peer.address) for key, peer in sorted(self._peers.items())]

    async def close(self) -> None:
        """Stop dialing, close every connection and wait for their tasks."""
        self._closing = True
        dials = list(self._dials.values())
        for task in dials:
            task.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        for peer in self._peers.values():
            peer.close_reason = "node shutting down"
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")
        if self._inbound_tasks:
            await asyncio.wait(list(self._inbound_tasks))
        if self._session is not None:
            await self._session.close()
        await self._decoder.close()

    def _enqueue(self, peer: PeerLink, frame: bytes, message: Record) -> bool:
        if not peer.enqueue(frame):
            return False
        self._on_traffic("out", type(message).__name__, len(frame))
        if isinstance(message, GetBlocks):
            self._requests.sent(peer.key)  # it owes one Blocks answer
        return True

    # --- accepting and dialing --------------------------------------------------------

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        host = request.remote or ""
        if self._bans.is_banned(host, self._now()):
            raise web.HTTPForbidden(text="banned")
        if self._closing or len(self._sockets) >= MAX_CONNECTIONS:
            raise web.HTTPServiceUnavailable(text="no room for another peer")
        if refusal := self._hosts.admit(host, self._now()):
            log.debug("refused a connection: %s", refusal)
            raise web.HTTPServiceUnavailable(text=refusal)
        task = asyncio.current_task()
        assert task is not None
        self._inbound_tasks.add(task)
        try:
            ws = web.WebSocketResponse(max_msg_size=WS_MAX_MSG_SIZE, compress=False,
                                       heartbeat=HEARTBEAT_S, timeout=CLOSE_TIMEOUT_S)
            await ws.prepare(request)
            outcome = await self._run(ws, host, outbound=False)
        finally:
            self._inbound_tasks.discard(task)
            self._hosts.release(host)
        if not outcome.served:
            log.info("refused peer from %s: %s", host, outcome.reason)
        return ws

    async def _dial(self, address: str) -> None:
        host, port = parse_address(address)
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}{P2P_PATH}"
        assert self._session is not None
        failures = 0
        peer_key: bytes | None = None
        while True:
            existing = self._peers.get(peer_key) if peer_key else None
            if existing is not None:  # connected the other way round
                await existing.closed.wait()
                continue
            if ban_wait := self._ban_wait(host, peer_key):
                await asyncio.sleep(ban_wait)
                continue
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    ws = await self._session.ws_connect(
                        url, max_msg_size=WS_MAX_MSG_SIZE, compress=0, heartbeat=HEARTBEAT_S,
                        timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcome = ConnectionOutcome(f"unreachable ({str(exc) or type(exc).__name__})")
            else:
                outcome = await self._run(ws, host, outbound=True)
            if outcome.self_connection:
                log.warning("peer %s is this node itself; not dialing it again", address)
                return
            peer_key = outcome.peer_key or peer_key
            if peer_key in self._peers:
                continue  # the same peer is connected the other way round: no failure
            # One line per failure streak; the streak ends when a connection is served.
            failures = 1 if outcome.served else failures + 1
            if failures == 1:
                log.warning("peer %s: %s; redialing quietly until it is back", address,
                            outcome.reason)
            else:
                log.debug("peer %s: %s", address, outcome.reason)
            await asyncio.sleep(backoff_delay(failures))

    def _ban_wait(self, host: str, peer_key: bytes | None) -> float:
        """Seconds until neither host nor peer_key is banned any more."""
        now = self._now()
        return max([self._bans.banned_until(s) - now for s in (host, peer_key)
                    if s is not None and self._bans.is_banned(s, now)], default=0.0)

    # --- one connection ---------------------------------------------------------------

    async def _run(self, ws: Socket, host: str, outbound: bool) -> ConnectionOutcome:
        """Drive one connection from handshake to close."""
        self._sockets.add(ws)
        rate = PeerRate(self.rate_per_s, self.burst, BYTES_PER_S, BYTE_BURST)
        outcome = ConnectionOutcome("closed by the peer")
        peer: PeerLink | None = None
        banned = False
        try:
            handshake = await self._handshake(ws, host, rate)
            outcome.peer_key = handshake.peer_key
            peer = await self._register(handshake, ws, outbound)
            outcome.served = True
            log.info("peer %s at %s connected (%s)", peer.key.hex()[:16], peer.address,
                     "outbound" if outbound else "inbound")
            await self._serve(peer, rate)
        except SelfConnection as exc:
            outcome.reason, outcome.self_connection = str(exc), True
        except HandshakeError as exc:
            outcome.reason = str(exc)
            if exc.misbehaving:
                # Its key is not proven before the handshake ends: ban its host.
                banned = self._ban(host, outcome.reason)
        except Disconnect as exc:
            outcome.reason = str(exc)
            if exc.ban is not None:
                banned = self._ban(exc.ban, outcome.reason)
        except TimeoutError:
            outcome.reason = "handshake timed out"
        except (ConnectionError, aiohttp.ClientError) as exc:
            outcome.reason = f"connection lost ({exc})"
        except Exception:
            # A bug of ours: this connection ends, the node and its other peers go on.
            log.exception("connection with %s failed", host)
            outcome.reason = "internal error"
        finally:
            self._sockets.discard(ws)
            if peer is not None:
                if self._peers.get(peer.key) is peer:
                    del self._peers[peer.key]
                    self._requests.forget(peer.key)
                peer.closed.set()
                # Our own reason for closing it (too slow, replaced) says more than
                # the socket's end that followed.
                outcome.reason = peer.close_reason or outcome.reason
            await ws.close(code=WSCloseCode.POLICY_VIOLATION if banned else WSCloseCode.OK,
                           message=outcome.reason.encode()[:CLOSE_REASON_BYTES])
        if peer is not None:
            log.info("peer %s disconnected: %s", peer.key.hex()[:16], outcome.reason)
        return outcome

    async def _handshake(self, ws: Socket, host: str, rate: PeerRate) -> Handshake:
        height, _ = self._head()
        handshake = Handshake(self.key, self.chain_id, self.genesis_hash, self.listen_address,
                              height, challenge=os.urandom(32))
        async with asyncio.timeout(self.handshake_timeout):
            await ws.send_bytes(encode_message(handshake.start()))
            while handshake.state is not HandshakeState.ESTABLISHED:
                frame = await receive_frame(ws, rate, ban=host)
                if frame is None:
                    raise Disconnect("closed during the handshake")
                if (kind := frame_type(frame, ban=host)) not in HANDSHAKE_TYPES:
                    raise Disconnect(f"{kind.__name__} during the handshake", ban=host)
                replies = handshake.receive(await self._decoder.decode(frame, ban=host))
                if (handshake.peer_hello is not None
                        and self._bans.is_banned(handshake.peer_key, self._now())):
                    # Refused before answering, so the banned peer's dialer counts a
                    # failure and backs off instead of reconnecting at once.
                    raise Disconnect("banned")
                for reply in replies:
                    await ws.send_bytes(encode_message(reply))
        return handshake

    async def _register(self, handshake: Handshake, ws: Socket, outbound: bool) -> PeerLink:
        key = handshake.peer_key
        existing = self._peers.get(key)
        if existing is not None:
            # Two nodes dialing each other at once must keep the same connection, or
            # each drops a different one and both are lost: keep the one dialed by
            # the smaller key.  From one dialer, the newer connection wins (the older
            # one is likely dead without either side having noticed yet).
            ours = self.key.public_key
            new_dialer = ours if outbound else key
            old_dialer = ours if existing.outbound else key
            if new_dialer != old_dialer and new_dialer != min(ours, key):
                raise Disconnect("duplicate connection")
        peer = PeerLink(key=key, address=handshake.peer_hello.listen_address, ws=ws,
                        outbound=outbound)
        self._peers[key] = peer  # before closing the old one, so it never looks gone
        if existing is not None:
            existing.close_reason = "replaced by a newer connection"
            await existing.ws.close(code=WSCloseCode.OK, message=b"duplicate connection")
        return peer

    async def _serve(self, peer: PeerLink, rate: PeerRate) -> None:
        """Read the peer's frames until it goes, while a second task writes to it."""
        height, head_hash = self._head()
        # Tells the node the new peer's head at once, so a node that is behind can sync.
        peer.enqueue(encode_message(Status(height, head_hash)))
        if self._on_connect is not None:
            self._on_connect(peer.key)
        writer = asyncio.create_task(peer.write(), name="p2p writer")
        try:
            while (frame := await receive_frame(peer.ws, rate, ban=peer.key)) is not None:
                await self._dispatch(peer, frame)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _dispatch(self, peer: PeerLink, frame: bytes) -> None:
        kind = frame_type(frame, ban=peer.key)
        name = kind.__name__
        self._on_traffic("in", name, len(frame))
        if kind in HANDSHAKE_TYPES:
            raise Disconnect(f"{name} after the handshake", ban=peer.key)
        if kind is Blocks and not self._requests.answered(peer.key):
            raise Disconnect("unrequested Blocks", ban=peer.key)
        gossip_id = message_id(frame) if kind in GOSSIP_TYPES else b""
        if gossip_id:
            if gossip_id in self._seen or gossip_id in self._decoding:
                return  # a copy of what we have, or are decoding from another peer: not decoded again
            self._decoding.add(gossip_id)
        try:
            message = await self._decoder.decode(frame, ban=peer.key)
        finally:
            self._decoding.discard(gossip_id)
        if gossip_id:
            self._seen.add(gossip_id, self._now())
        try:
            await self._on_message(peer.key, message)
        except InvalidPeerMessage as exc:
            raise Disconnect(f"invalid {name}: {exc}", ban=peer.key) from None
        except Exception as exc:  # a well-formed message: the node's bug, not the peer's fault
            self._failures.failed(name, peer.key, exc, self._now())

    def _ban(self, subject: bytes | str, reason: str) -> bool:
        """Ban a peer key or a host; False for a trusted host, which is only dropped."""
        if isinstance(subject, str) and subject in self.trusted_hosts:
            log.warning("dropped a connection from configured peer host %s (not banned): %s", subject, reason)
            return False
        self._bans.ban(subject, self._now(), self.ban_seconds)
        self._on_ban()
        shown = subject.hex()[:16] if isinstance(subject, bytes) else subject
        log.warning("banned %s for %.0f s: %s", shown, self.ban_seconds, reason)
        return True

    def _now(self) -> float:
        return time.monotonic()  # the event loop's clock, and readable outside it
