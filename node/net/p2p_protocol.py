"""The peer protocol without I/O: the handshake state machine, rate limiting, bans,
per-host connection limits, the Blocks answers peers owe us and the gossip seen-cache.

Nothing here reads a socket or a clock: frames and the current time are passed in,
messages to send are handed back, so every edge case is a unit test (the approach of
h11).  node.net.p2p drives these pieces over aiohttp WebSockets.
"""
from __future__ import annotations

import enum
from collections import OrderedDict

from node.types.codec import Record
from node.types.crypto import SigningKey
from node.net.wire import MAX_ADDRESS, Hello, HelloAck, handshake_signature_valid, sign_handshake
from node.storage.config import parse_host_port


# Inbound connections per remote host, handshaking or established, and new ones per
# second.  Trusted hosts (those of the configured peers) get more, still bounded: on a
# devnet every peer is 127.0.0.1, and restarts make them all redial at once.  Each
# connection may hold a frame at the cap being received (about twice its size in
# buffers): 64 flooding connections from one host took 1 GiB, so a host gets 24 at most.
HOST_CONNECTIONS = 8
HOST_CONNECTS_PER_S = 2.0
HOST_CONNECT_BURST = 8.0
TRUSTED_HOST_CONNECTIONS = 24
TRUSTED_HOST_CONNECTS_PER_S = 20.0
TRUSTED_HOST_CONNECT_BURST = 24.0


class HandshakeError(Exception):
    """A handshake that cannot succeed; str() is a one-line reason.

    misbehaving is True when the peer broke the protocol (bad signature, messages
    out of order) rather than merely following another chain or being ourselves."""

    def __init__(self, reason: str, misbehaving: bool):
        super().__init__(reason)
        self.misbehaving = misbehaving


class SelfConnection(HandshakeError):
    """The peer is this very node (its own address among its peers, or a loopback)."""

    def __init__(self) -> None:
        super().__init__("connected to ourselves", misbehaving=False)


class HandshakeState(enum.Enum):
    START = "start"
    HELLO_SENT = "hello sent"  # waiting for their Hello
    ACK_SENT = "ack sent"  # their Hello accepted and answered; waiting for their HelloAck
    ESTABLISHED = "established"
    FAILED = "failed"


def parse_address(address: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 hosts in brackets); ValueError with a one-line reason."""
    if len(address.encode()) > MAX_ADDRESS:
        raise ValueError(f"peer address of {len(address.encode())} bytes is longer than "
                         f"{MAX_ADDRESS}")
    try:
        return parse_host_port(address)
    except ValueError as exc:
        raise ValueError(f"peer address {address!r}: {exc}") from None


class Handshake:
    """Both sides run the same machine: send Hello, receive theirs, answer its
    challenge with a HelloAck, then verify their HelloAck over our challenge.

    The challenge must be fresh randomness for every connection: it is what makes a
    recorded HelloAck useless to anyone replaying it."""

    def __init__(self, key: SigningKey, chain_id: str, genesis_hash: bytes,
                 listen_address: str, height: int, challenge: bytes):
        self.key = key
        self.hello = Hello(chain_id=chain_id, genesis_hash=genesis_hash,
                           public_key=key.public_key, listen_address=listen_address,
                           height=height, challenge=challenge)
        self.state = HandshakeState.START
        self.peer_hello: Hello | None = None

    @property
    def peer_key(self) -> bytes:
        """The peer's public key; proven only once the state is ESTABLISHED."""
        assert self.peer_hello is not None, "no Hello received yet"
        return self.peer_hello.public_key

    def start(self) -> Hello:
        """Our Hello, to send first."""
        if self.state is not HandshakeState.START:
            raise RuntimeError("the handshake has already started")
        self.state = HandshakeState.HELLO_SENT
        return self.hello

    def receive(self, message: Record) -> list[Record]:
        """Feed the peer's next message; returns what to send back.
        Raises HandshakeError, and stays FAILED, if the handshake cannot succeed."""
        try:
            return self._receive(message)
        except HandshakeError:
            self.state = HandshakeState.FAILED
            raise

    def _receive(self, message: Record) -> list[Record]:
        name = type(message).__name__
        if self.state is HandshakeState.HELLO_SENT and isinstance(message, Hello):
            self._check_hello(message)
            self.peer_hello = message
            self.state = HandshakeState.ACK_SENT
            return [sign_handshake(self.key, self.hello.chain_id, message.challenge,
                                   message.public_key)]
        if self.state is HandshakeState.ACK_SENT and isinstance(message, HelloAck):
            if not handshake_signature_valid(message, self.hello.chain_id, self.hello.challenge,
                                             self.peer_key, self.key.public_key):
                raise HandshakeError("bad handshake signature", misbehaving=True)
            self.state = HandshakeState.ESTABLISHED
            return []
        raise HandshakeError(f"unexpected {name} in handshake state '{self.state.value}'",
                             misbehaving=True)

    def _check_hello(self, hello: Hello) -> None:
        ours = self.hello
        if hello.chain_id != ours.chain_id:
            raise HandshakeError(f"peer is on chain {hello.chain_id!r}, not {ours.chain_id!r}",
                                 misbehaving=False)
        if hello.genesis_hash != ours.genesis_hash:
            raise HandshakeError(f"peer has genesis {hello.genesis_hash.hex()}, "
                                 f"not {ours.genesis_hash.hex()}", misbehaving=False)
        if hello.public_key == ours.public_key:
            raise SelfConnection()
        if hello.challenge == ours.challenge:
            # Our own challenge echoed back: someone is reflecting our Hello.
            raise HandshakeError("peer echoed our challenge", misbehaving=True)
        try:
            parse_address(hello.listen_address)
        except ValueError as exc:
            raise HandshakeError(f"peer's listen address: {exc}", misbehaving=True) from None


class TokenBucket:
    """Allows rate_per_s on average and bursts of up to burst; starts full."""

    def __init__(self, rate_per_s: float, burst: float):
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.last: float | None = None

    def allow(self, now: float, cost: float = 1) -> bool:
        if self.last is not None:
            # max(0, ...): a clock that steps back must not drain the bucket.
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now if self.last is None else max(self.last, now)
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


class TokenBuckets:
    """A token bucket per key (a host, a client and a kind of request), made on first
    use; bounded: the buckets of the keys seen least recently are forgotten first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: object, rate_per_s: float, burst: float) -> TokenBucket:
        """key's bucket; a new one, full, with this rate and burst if it has none."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate_per_s, burst)
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return bucket


class PeerRate:
    """What one peer may send: a number of frames and a number of bytes per second,
    each with its burst (the byte burst must admit one frame of the largest size)."""

    def __init__(self, frames_per_s: float, frame_burst: float, bytes_per_s: float,
                 byte_burst: float):
        self.frames = TokenBucket(frames_per_s, frame_burst)
        self.bytes = TokenBucket(bytes_per_s, byte_burst)

    def allow(self, now: float, size: int) -> bool:
        # Both are charged, even when the first refuses: a refusal bans the peer anyway.
        frame_ok = self.frames.allow(now)
        return self.bytes.allow(now, cost=size) and frame_ok


class BanList:
    """Peers (by public key) and hosts (by address) refused until a deadline.

    Bounded: when full, the ban closest to expiring makes room, so a stream of
    misbehaving addresses cannot grow memory without limit."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._until: dict[bytes | str, float] = {}

    def ban(self, subject: bytes | str, now: float, duration: float) -> None:
        until = max(now + duration, self._until.get(subject, now))
        self._until = {s: t for s, t in self._until.items() if t > now}
        if subject not in self._until and len(self._until) >= self.capacity:
            del self._until[min(self._until, key=self._until.__getitem__)]
        self._until[subject] = until

    def is_banned(self, subject: bytes | str, now: float) -> bool:
        until = self._until.get(subject)
        if until is None:
            return False
        if until <= now:
            del self._until[subject]
            return False
        return True

    def banned_until(self, subject: bytes | str) -> float | None:
        return self._until.get(subject)


class Requests:
    """The Blocks answers each peer owes: one for every GetBlocks sent to it.  A Blocks
    frame from a peer that owes none was never asked for, so it is refused unread."""

    def __init__(self) -> None:
        self._owed: dict[bytes, int] = {}

    def sent(self, peer: bytes) -> None:
        self._owed[peer] = self._owed.get(peer, 0) + 1

    def answered(self, peer: bytes) -> bool:
        """Settle one answer from peer; False if it owed none."""
        owed = self._owed.get(peer, 0)
        if owed == 0:
            return False
        if owed == 1:
            del self._owed[peer]
        else:
            self._owed[peer] = owed - 1
        return True

    def forget(self, peer: bytes) -> None:
        """The peer is gone: what it was asked on its old connections will not come."""
        self._owed.pop(peer, None)


class HostLimits:
    """Inbound connections per remote host: how many at once (handshaking or established)
    and how many new ones per second, so that a host cannot fill our slots, nor walk back
    in with a fresh key per connection at line rate once its keys are banned.

    Trusted hosts get larger but still bounded limits.  Bounded: the buckets of the hosts
    seen least recently are forgotten first."""

    def __init__(self, trusted: frozenset[str], *, per_host: int = HOST_CONNECTIONS,
                 trusted_per_host: int = TRUSTED_HOST_CONNECTIONS,
                 rate_per_s: float = HOST_CONNECTS_PER_S, burst: float = HOST_CONNECT_BURST,
                 trusted_rate_per_s: float = TRUSTED_HOST_CONNECTS_PER_S,
                 trusted_burst: float = TRUSTED_HOST_CONNECT_BURST, capacity: int = 10_000):
        self.trusted = trusted
        self.per_host = per_host
        self.trusted_per_host = trusted_per_host
        self._rates = {False: (rate_per_s, burst), True: (trusted_rate_per_s, trusted_burst)}
        self._open: dict[str, int] = {}
        self._buckets = TokenBuckets(capacity)

    def admit(self, host: str, now: float) -> str | None:
        """Count a new connection from host; None, or the one-line reason it is refused."""
        trusted = host in self.trusted
        limit = self.trusted_per_host if trusted else self.per_host
        if self._open.get(host, 0) >= limit:
            return f"{limit} connections from {host} already"
        if not self._buckets.get(host, *self._rates[trusted]).allow(now):
            return f"too many new connections from {host}; try again later"
        self._open[host] = self._open.get(host, 0) + 1
        return None

    def release(self, host: str) -> None:
        """A connection admit() counted has ended."""
        if self._open[host] == 1:
            del self._open[host]
        else:
            self._open[host] -= 1



class SeenCache:
    """The ids of the gossip messages seen in the last max_age seconds, at most the last
    `capacity` of them, the oldest forgotten first.  A copy of a message arrives within
    seconds of it, so remembering more is memory spent for nothing (a forgotten id costs
    one more decode, which the message's consumer then finds a duplicate); the capacity
    bounds the memory under a flood."""

    def __init__(self, capacity: int = 100_000, max_age: float = 600.0):
        if capacity <= 0:
            raise ValueError("a seen-cache needs a positive capacity")
        self.capacity = capacity
        self.max_age = max_age
        self._ids: OrderedDict[bytes, float] = OrderedDict()  # id -> when last seen, oldest first

    def add(self, message_id: bytes, now: float) -> bool:
        """Record message_id, seen at now; True if it is new, False if it was seen before."""
        new = message_id not in self._ids
        self._ids[message_id] = now
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.capacity or next(iter(self._ids.values())) < now - self.max_age:
            self._ids.popitem(last=False)
        return new

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


def backoff_delay(failures: int, initial: float = 0.5, maximum: float = 5.0) -> float:
    """Seconds to wait before redialing after `failures` consecutive failures (>= 1).
    Only configured peers are redialed, so the cap is short: after a partition heals,
    the peers find each other within seconds (a 30 s cap once added 13 s to a 20 s
    partition), and a dead peer costs one dial every few seconds."""
    return min(maximum, initial * 2 ** min(max(failures - 1, 0), 32))
