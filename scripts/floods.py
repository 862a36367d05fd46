"""Flood clients against a running devnet: what a spammer or a Byzantine peer can throw
at a node's HTTP API and its peer port, to check the node's defences on real processes.

    mempool_flood  fresh zero-balance keys POSTing transfers with future nonces
    frame_flood    peers sending maximum-size Proposal frames that decode to the last
                   byte, then fail (each costs the node a full decode)
    vote_flood     a committee member's key signing votes for far-future rounds of the
                   height being decided, at just under the per-peer frame rate
    blocks_flood   peers sending Blocks frames nobody asked for

Each flood runs until `seconds` have passed or `stop` is set, and returns a dict of
counters (what it sent, how the node answered).  The p2p floods speak the real
protocol: a WebSocket to the node's /p2p, the Handshake of node.net.p2p_protocol
with a fresh key per connection, and canonical frames.  `run_flood` runs one flood
against a devnet directory made by scripts/devnet.py, for a process of its own.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import pathlib
import time
from typing import Awaitable, Iterator

import aiohttp
from aiohttp import WSMsgType

from node.net.p2p import BYTES_PER_S, RATE_PER_S
from node.net.p2p_protocol import Handshake, HandshakeError, HandshakeState
from node.net.wire import MAX_FRAME_BYTES, Blocks, BlockWithCommit, decode_message, encode_message
from node.storage.home import GENESIS_FILE, KEY_FILE, read_key_file
from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader
from node.types.codec import DecodeError
from node.types.crypto import SigningKey
from node.types.genesis import load_genesis
from node.types.proposal import NO_POL_ROUND, Proposal
from node.types.transactions import SignedTx, Transfer, sign_tx
from node.types.votes import NIL_HASH, PRECOMMIT, PREVOTE, VoteBody, sign_vote

# Where flood peers say they listen: nothing does, so a node that tries it fails fast.
FAKE_LISTEN = "127.0.0.1:9"
HANDSHAKE_TIMEOUT_S = 5.0
END_GRACE_S = 2.0  # for the node's verdict on the last frames sent
REFUSED_PAUSE_S = 0.05  # after a refused upgrade: the node's per-host bucket refills at 20/s
# Far beyond any round an honest validator reaches, so the flood's votes never conflict
# with what the key's own node signs (that would be a double-sign, a different attack).
FIRST_FAR_ROUND = 1000
VOTE_RATE = 0.8 * RATE_PER_S  # under the per-peer frame rate: the flooder must not be banned
MEMPOOL_NONCES = range(1, 21)  # ahead of a fresh key's next nonce (0), within the pool's gap
P2P_PATH = "/p2p"


@dataclasses.dataclass(frozen=True)
class ChainInfo:
    chain_id: str
    genesis_hash: bytes
    min_tx_fee: int

    @classmethod
    def of_home(cls, home: pathlib.Path) -> "ChainInfo":
        genesis = load_genesis(home / GENESIS_FILE)
        return cls(genesis.chain_id, bytes.fromhex(genesis.hash), genesis.economics.min_tx_fee)


class PeerRefused(Exception):
    """The node refused a connection before or during the handshake; str() says how."""


# --- one peer connection ----------------------------------------------------------------

async def open_peer(session: aiohttp.ClientSession, url: str, chain: ChainInfo,
                    key: SigningKey) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket to url's /p2p with the handshake done under key; PeerRefused if the
    node answers the upgrade with an error or closes during the handshake."""
    try:
        ws = await session.ws_connect(url + P2P_PATH, max_msg_size=MAX_FRAME_BYTES + 1, compress=0,
                                      timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
    except aiohttp.WSServerHandshakeError as exc:
        raise PeerRefused(f"upgrade {exc.status}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise PeerRefused(f"connect failed ({type(exc).__name__})") from None
    handshake = Handshake(key, chain.chain_id, chain.genesis_hash, FAKE_LISTEN, 0, os.urandom(32))
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            await ws.send_bytes(encode_message(handshake.start()))
            while handshake.state is not HandshakeState.ESTABLISHED:
                msg = await ws.receive()
                if msg.type is not WSMsgType.BINARY:
                    raise PeerRefused(f"closed in the handshake: {_close_reason(ws, msg)}")
                for reply in handshake.receive(decode_message(msg.data)):
                    await ws.send_bytes(encode_message(reply))
    except TimeoutError:
        await ws.close()
        raise PeerRefused("handshake timed out") from None
    except (HandshakeError, DecodeError, ConnectionError, aiohttp.ClientError) as exc:
        await ws.close()
        raise PeerRefused(f"handshake failed ({exc})") from None
    except PeerRefused:
        await ws.close()
        raise
    return ws


def _close_reason(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> str:
    if msg.type is WSMsgType.CLOSE:
        return f"{msg.data} {msg.extra}".strip()
    return f"{ws.close_code} {msg.type.name.lower()}"


async def drain_until_closed(ws: aiohttp.ClientWebSocketResponse) -> str:
    """Read (and drop) what the node sends until it closes; the close code and reason.
    Reading matters: a peer that does not is dropped as too slow, not for its frames."""
    while True:
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return _close_reason(ws, msg)


def _remaining(deadline: float, stop: asyncio.Event) -> float:
    return 0.0 if stop.is_set() else max(0.0, deadline - time.monotonic())


async def _before_end(awaitable: Awaitable, deadline: float, stop: asyncio.Event) -> bool:
    """Await awaitable unless the flood ends first; False (and it cancelled) if it did."""
    task = asyncio.ensure_future(awaitable)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopped], timeout=_remaining(deadline, stop),
                       return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        return False
    task.result()  # a send's error, for the caller
    return True


@dataclasses.dataclass
class _PeerTally:
    connections: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    refused: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    closes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def as_dict(self, flood: str) -> dict:
        return {"flood": flood, "connections": self.connections, "frames_sent": self.frames_sent,
                "mb_sent": round(self.bytes_sent / 2**20, 1), "refused": dict(self.refused),
                "closes": dict(self.closes)}


async def _send_until_closed(session: aiohttp.ClientSession, url: str, chain: ChainInfo,
                             frames: Iterator[bytes], deadline: float, stop: asyncio.Event,
                             tally: _PeerTally) -> None:
    """One flood peer: connect with a fresh key, send frames at the per-peer byte rate
    until the node closes the connection, then again with another key, until the end."""
    while _remaining(deadline, stop):
        try:
            ws = await open_peer(session, url, chain, SigningKey(os.urandom(32)))
        except PeerRefused as exc:
            tally.refused[str(exc)] += 1
            await asyncio.sleep(REFUSED_PAUSE_S)
            continue
        tally.connections += 1
        closed = asyncio.create_task(drain_until_closed(ws))
        try:
            while not closed.done() and _remaining(deadline, stop):
                frame = next(frames)
                if not await _before_end(ws.send_bytes(frame), deadline, stop):
                    break  # a node that reads no more holds a send back: the end comes first
                tally.frames_sent += 1
                tally.bytes_sent += len(frame)
                await asyncio.wait([closed], timeout=min(len(frame) / BYTES_PER_S,
                                                         _remaining(deadline, stop)))
        except (ConnectionError, aiohttp.ClientError):
            pass  # the node closed it under us: the reason comes with the close
        if not closed.done():  # the end of the flood: a last moment for the node's verdict
            await asyncio.wait([closed], timeout=END_GRACE_S)
        tally.closes[_outcome(closed)] += 1
        await ws.close()


def _outcome(closed: asyncio.Task) -> str:
    """How a connection ended: the node's close code and reason, if it closed it."""
    if not closed.done():
        closed.cancel()
        return "open at the end"
    if closed.exception() is not None:
        return f"error {type(closed.exception()).__name__}"
    return closed.result()


async def _peer_flood(name: str, url: str, chain: ChainInfo, frames: list[bytes], seconds: float,
                      stop: asyncio.Event, connections: int) -> dict:
    deadline = time.monotonic() + seconds
    tally = _PeerTally()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*[
            _send_until_closed(session, url, chain, _cycle(frames, start=i), deadline, stop, tally)
            for i in range(connections)])
    return tally.as_dict(name)


def _cycle(frames: list[bytes], start: int) -> Iterator[bytes]:
    i = start
    while True:
        yield frames[i % len(frames)]
        i += 1


# --- frames -------------------------------------------------------------------------------

def _block_near_the_cap(chain_id: str, room: int) -> Block:
    """A block of small transfers whose encoding fills `room` bytes but a few hundred: the
    slowest thing to decode per byte (tests/integration/test_p2p.py measures it)."""
    key = SigningKey(os.urandom(32))
    tx = sign_tx(key, chain_id, 0, Transfer(key.public_key, 1), 0)
    header = BlockHeader(chain_id=chain_id, height=1, round=0, time_ms=1, prev_hash=bytes(32),
                         last_commit_hash=EMPTY_COMMIT.hash, tx_root=bytes(32),
                         close_hash=bytes(32), state_root=bytes(32), proposer=key.public_key)
    empty = Block(header=header, txs=(), last_commit=EMPTY_COMMIT)
    count = (room - len(empty.encode()) - 512) // len(tx.encode())
    return Block(header=header, txs=(tx,) * count, last_commit=EMPTY_COMMIT)


def undecodable_proposal_frame(chain_id: str) -> bytes:
    """A Proposal-tagged frame of exactly MAX_FRAME_BYTES that decodes to its last record
    and then fails on trailing bytes: the most decoding one frame can cost the node."""
    block = _block_near_the_cap(chain_id, MAX_FRAME_BYTES)
    frame = encode_message(Proposal(1, 0, NO_POL_ROUND, block, bytes(32), bytes(64)))
    return frame + bytes(MAX_FRAME_BYTES - len(frame))


def unrequested_blocks_frames(chain_id: str) -> list[bytes]:
    """A well-formed Blocks answer near the cap, and garbage under the Blocks tag."""
    block = _block_near_the_cap(chain_id, MAX_FRAME_BYTES)
    valid_looking = encode_message(Blocks((BlockWithCommit(block, EMPTY_COMMIT),)))
    garbage = encode_message(Blocks(()))[:1] + os.urandom(64 * 1024)
    return [valid_looking, garbage]


# --- the floods ---------------------------------------------------------------------------

async def frame_flood(url: str, chain: ChainInfo, seconds: float, stop: asyncio.Event,
                      connections: int = 10) -> dict:
    """`connections` peers at once, each sending maximum-size frames that fail to decode
    at the per-peer byte rate; a peer the node bans comes back under a fresh key."""
    return await _peer_flood("frame", url, chain, [undecodable_proposal_frame(chain.chain_id)],
                             seconds, stop, connections)


async def blocks_flood(url: str, chain: ChainInfo, seconds: float, stop: asyncio.Event,
                       connections: int = 10) -> dict:
    """`connections` peers at once sending Blocks frames the node never asked for (half
    of them well-formed blocks near the cap, half garbage), back under fresh keys when banned."""
    return await _peer_flood("blocks", url, chain, unrequested_blocks_frames(chain.chain_id),
                             seconds, stop, connections)


def _mempool_txs(chain: ChainInfo, keys_per_batch: int) -> Iterator[tuple[SignedTx, bool]]:
    """Transfers from fresh zero-balance keys, nonces 1..20 each; (tx, whether its key is
    new).  Signed as they are sent (a key costs 20 signatures, tens of microseconds each)."""
    while True:
        keys = [SigningKey(os.urandom(32)) for _ in range(keys_per_batch)]
        for nonce in MEMPOOL_NONCES:
            for key in keys:
                tx = sign_tx(key, chain.chain_id, nonce, Transfer(key.public_key, 1), chain.min_tx_fee)
                yield tx, nonce == MEMPOOL_NONCES[0]


async def mempool_flood(urls: list[str], chain: ChainInfo, seconds: float, stop: asyncio.Event,
                        keys: int = 1000, concurrency: int = 64, source: str | None = None) -> dict:
    """Transfers with future nonces from fresh keys that hold nothing, POSTed to the nodes
    in turn as fast as they answer, `concurrency` at a time; a new batch of `keys` keys
    once a batch's 20 nonces are sent.  source: the local address to send from (another
    loopback address is another client to the node's per-client rate limits)."""
    deadline = time.monotonic() + seconds
    replies: collections.Counter[str] = collections.Counter()
    txs = _mempool_txs(chain, keys)
    counts = {"posted": 0, "keys": 0}
    connector = aiohttp.TCPConnector(limit=concurrency,
                                     local_addr=(source, 0) if source is not None else None)
    timeout = aiohttp.ClientTimeout(total=10)

    async def worker(session: aiohttp.ClientSession) -> None:
        while _remaining(deadline, stop):
            tx, new_key = next(txs)
            url = urls[counts["posted"] % len(urls)]
            counts["posted"] += 1
            counts["keys"] += new_key
            try:
                async with session.post(url + "/txs", data=tx.encode().hex()) as response:
                    reply = await response.json(content_type=None)
                    reason = reply.get("reason") if isinstance(reply, dict) else None
                    replies[f"{response.status} {reason}" if reason else str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                replies[f"error {type(exc).__name__}"] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*[worker(session) for _ in range(concurrency)])
    return {"flood": "mempool", "keys": counts["keys"], "posted": counts["posted"],
            "replies": dict(replies)}


async def _send_all(ws: aiohttp.ClientWebSocketResponse, frames: list[bytes]) -> None:
    for frame in frames:
        await ws.send_bytes(frame)


async def _decided_height(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/status") as response:
        return (await response.json())["height"] + 1


class FarRoundVotes:
    """Frames of nil votes signed by one key for rounds FIRST_FAR_ROUND, FIRST_FAR_ROUND + 1,
    ... of whichever height is asked for: a prevote and a precommit per round, each
    (height, round, kind) signed once, so no two of them conflict."""

    def __init__(self, key: SigningKey, chain_id: str):
        self.key = key
        self.chain_id = chain_id
        self.signed = 0
        self.signing_s = 0.0  # time spent signing and encoding them
        self._next: dict[int, int] = {}  # height -> votes signed for it

    def sign(self, height: int, count: int) -> list[bytes]:
        began = time.perf_counter()
        first = self._next.get(height, 0)
        self._next[height] = first + count
        frames = [encode_message(sign_vote(self.key, self.chain_id, VoteBody(
                      PREVOTE if i % 2 == 0 else PRECOMMIT, height, FIRST_FAR_ROUND + i // 2, NIL_HASH)))
                  for i in range(first, first + count)]
        self.signing_s += time.perf_counter() - began
        self.signed += count
        return frames

    @property
    def heights(self) -> int:
        return sum(n > 0 for n in self._next.values())


async def vote_flood(url: str, chain: ChainInfo, validator: SigningKey, seconds: float,
                     stop: asyncio.Event, votes: int = 100_000, rate: float = VOTE_RATE) -> dict:
    """Votes signed by a committee member's key for far-future rounds of the height the
    node is deciding (FarRoundVotes), `rate` a second over one connection, re-targeted
    as the height moves.  Signing keeps up without help: tens of thousands a second.

    The connection's own handshake key is a fresh one: the validator's node holds a
    connection under its key already, and a second would replace it or be refused as a
    duplicate, a test of connection rules rather than of what consensus holds.  Votes are
    checked by their own signatures whoever relays them."""
    began = time.monotonic()
    deadline = began + seconds
    signer = FarRoundVotes(validator, chain.chain_id)
    sent = connections = 0
    closes: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as session:
        height = await _decided_height(session, url)

        async def follow_height() -> None:
            nonlocal height
            while _remaining(deadline, stop):
                try:
                    height = await _decided_height(session, url)
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    pass  # a busy node: keep the height we know
                await asyncio.sleep(0.25)

        follower = asyncio.create_task(follow_height())
        while sent < votes and _remaining(deadline, stop):
            try:
                ws = await open_peer(session, url, chain, SigningKey(os.urandom(32)))
            except PeerRefused as exc:
                closes[str(exc)] += 1
                await asyncio.sleep(REFUSED_PAUSE_S)
                continue
            connections += 1
            closed = asyncio.create_task(drain_until_closed(ws))
            opened, sent_here = time.monotonic(), 0
            try:
                while not closed.done() and sent < votes and _remaining(deadline, stop):
                    due = min(int((time.monotonic() - opened) * rate) - sent_here, votes - sent)
                    frames = signer.sign(height, max(due, 0))
                    if not await _before_end(_send_all(ws, frames), deadline, stop):
                        break
                    sent_here += len(frames)
                    sent += len(frames)
                    await asyncio.sleep(0.02)
            except (ConnectionError, aiohttp.ClientError):
                pass  # the node closed it under us: the reason comes with the close
            closes[_outcome(closed)] += 1
            await ws.close()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    return {"flood": "vote", "votes_sent": sent,
            "votes_per_s": round(sent / (time.monotonic() - began)), "connections": connections,
            "heights_targeted": signer.heights,
            "sign_per_s": round(signer.signed / signer.signing_s) if signer.signing_s else None,
            "closes": dict(closes)}


# --- against a devnet directory -------------------------------------------------------------

# in the order a benchmark runs them: the frame flood last, since the memory its frames
# take stays with the node's allocator for a while after it ends
FLOODS = ("mempool", "vote", "blocks", "frame")


def run_flood(name: str, directory: str, seconds: float, target: int = 0,
              byzantine: int = -1, source: str | None = None) -> dict:
    """Run one flood against the devnet in directory (scripts/devnet.py's layout) to the
    end, in this process: the p2p floods at node `target`, the vote flood signed with
    the key of node `byzantine`, the mempool flood at every node from `source`."""
    nodes = [n for n in json.loads((pathlib.Path(directory) / "devnet.json").read_text())["nodes"]
             if n["url"] is not None]
    chain = ChainInfo.of_home(pathlib.Path(nodes[0]["home"]))
    url = nodes[target]["url"]

    async def flood() -> dict:
        stop = asyncio.Event()
        if name == "mempool":
            return await mempool_flood([n["url"] for n in nodes], chain, seconds, stop, source=source)
        if name == "frame":
            return await frame_flood(url, chain, seconds, stop)
        if name == "vote":
            key = read_key_file(pathlib.Path(nodes[byzantine]["home"]) / KEY_FILE)
            return await vote_flood(url, chain, key, seconds, stop)
        if name == "blocks":
            return await blocks_flood(url, chain, seconds, stop)
        raise ValueError(f"no flood named {name!r} (expected one of {', '.join(FLOODS)})")

    return asyncio.run(flood())
