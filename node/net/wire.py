"""Every message peers exchange, as one tagged union of codec records.

A frame is exactly one encoded PEER_MESSAGE: a one-byte tag, then the record.
Each message type has its own frame cap (FRAME_CAPS, at most MAX_FRAME_BYTES), checked
from the tag and the length before anything is decoded, so a peer cannot make us parse
(or allocate for) more than the type it names can hold.  Gossiped messages
are identified by the SHA-256 of their frame; the encoding is canonical, so every
copy of one vote (or proposal, or transaction) has the same id on every node.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from node.types import crypto
from node.types.blocks import MAX_CHAIN_ID, Block, CommitCertificate
from node.types.votes import Vote
from node.types.codec import (HASH, PUBKEY, SIGNATURE, U64, Codec, DecodeError, FixedBytes,
                              ListOf, Nested, Reader, Record, Tagged, Text, UInt, VarBytes)
from node.types.proposal import Proposal
from node.types.transactions import SignedTx

HANDSHAKE_DOMAIN = "handshake"
MAX_FRAME_BYTES = 8 * 1024 * 1024
# The largest consensus.max_tx_bytes a genesis may set (node.types.genesis): no chain
# accepts a bigger transaction, so no honest peer gossips one.
MAX_TX_BYTES = 1_048_576
MAX_ADDRESS = 261  # a 255-byte DNS name, ":" and a 5-digit port
MAX_BLOCKS_PER_MESSAGE = 100


class UIntUpTo(UInt):
    """An unsigned integer that must not exceed a cap, on encode and on decode."""

    def __init__(self, bits: int, maximum: int):
        super().__init__(bits)
        self.maximum = maximum

    def check(self, value: Any, name: str) -> None:
        super().check(value, name)
        if value > self.maximum:
            raise ValueError(f"{name}: {value} exceeds the cap of {self.maximum}")

    def read(self, reader: Reader) -> int:
        value = super().read(reader)
        if value > self.maximum:
            raise DecodeError(f"{value} exceeds the cap of {self.maximum}")
        return value


@dataclasses.dataclass(frozen=True)
class Hello(Record):
    """The first frame each side sends: who it is, which chain it follows, and a fresh
    challenge the other side must sign."""
    chain_id: str
    genesis_hash: bytes
    public_key: bytes
    listen_address: str  # "host:port" where this node accepts peers
    height: int
    challenge: bytes
    SCHEMA = (("chain_id", Text(MAX_CHAIN_ID)), ("genesis_hash", HASH), ("public_key", PUBKEY),
              ("listen_address", Text(MAX_ADDRESS)), ("height", U64), ("challenge", HASH))


@dataclasses.dataclass(frozen=True)
class HelloAck(Record):
    """The answer to the other side's Hello: a signature by our key over
    handshake_message(their challenge, our key, their key) under the handshake domain."""
    signature: bytes
    SCHEMA = (("signature", SIGNATURE),)


def handshake_message(challenge: bytes, signer: bytes, verifier: bytes) -> bytes:
    """What a HelloAck signs.  Binding both keys (and, through the domain, the chain id)
    means an answer captured on one connection proves nothing on any other."""
    return challenge + signer + verifier  # all 32 bytes: the concatenation is unambiguous


def sign_handshake(key: crypto.SigningKey, chain_id: str, challenge: bytes,
                   verifier: bytes) -> HelloAck:
    message = handshake_message(challenge, key.public_key, verifier)
    return HelloAck(key.sign(HANDSHAKE_DOMAIN, chain_id, message))


def handshake_signature_valid(ack: HelloAck, chain_id: str, challenge: bytes, signer: bytes,
                              verifier: bytes) -> bool:
    return crypto.verify(signer, ack.signature, HANDSHAKE_DOMAIN, chain_id,
                         handshake_message(challenge, signer, verifier))


@dataclasses.dataclass(frozen=True)
class TxMessage(Record):
    """A transaction gossiped to the mempools (its own record, so the union's tags
    name messages, not the chain's types)."""
    tx: SignedTx
    SCHEMA = (("tx", Nested(SignedTx)),)


@dataclasses.dataclass(frozen=True)
class Status(Record):
    """A peer's finalized head; sent right after the handshake and whenever asked."""
    height: int
    head_hash: bytes
    SCHEMA = (("height", U64), ("head_hash", HASH))


@dataclasses.dataclass(frozen=True)
class GetBlocks(Record):
    """Ask for up to count finalized blocks starting at from_height."""
    from_height: int
    count: int
    SCHEMA = (("from_height", U64), ("count", UIntUpTo(16, MAX_BLOCKS_PER_MESSAGE)))


@dataclasses.dataclass(frozen=True)
class BlockWithCommit(Record):
    """A finalized block and the certificate that finalized it."""
    block: Block
    commit: CommitCertificate
    SCHEMA = (("block", Nested(Block)), ("commit", Nested(CommitCertificate)))


@dataclasses.dataclass(frozen=True)
class Blocks(Record):
    items: tuple[BlockWithCommit, ...]
    SCHEMA = (("items", ListOf(Nested(BlockWithCommit), MAX_BLOCKS_PER_MESSAGE)),)


# Tags are part of the protocol: never renumber, only add.
PEER_MESSAGE = Tagged({1: Hello, 2: HelloAck, 3: Proposal, 4: Vote, 5: TxMessage, 6: Status,
                       7: GetBlocks, 8: Blocks})
HANDSHAKE_TYPES = (Hello, HelloAck)
GOSSIP_TYPES = (Proposal, Vote, TxMessage)  # flooded to every peer, deduplicated by frame id


def max_encoded_size(codec: Codec | type[Record]) -> int:
    """The most bytes any value of codec (or of a record type) can encode to."""
    if isinstance(codec, type):
        return sum(max_encoded_size(field) for _, field in codec.SCHEMA)
    if isinstance(codec, (UInt, FixedBytes)):
        return codec.size
    if isinstance(codec, VarBytes):
        return 4 + codec.max_len
    if isinstance(codec, Text):
        return max_encoded_size(codec.raw)
    if isinstance(codec, ListOf):
        return 4 + codec.max_items * max_encoded_size(codec.item)
    if isinstance(codec, Nested):
        return max_encoded_size(codec.cls)
    if isinstance(codec, Tagged):
        return 1 + max(max_encoded_size(cls) for cls in codec.by_cls)
    raise TypeError(f"no size bound for {type(codec).__name__}")


def _frame_cap(cls: type[Record]) -> int:
    # The schema's own bound (a few hundred bytes for a vote or a handshake message),
    # within what the protocol lets that type carry at all.
    limit = 1 + MAX_TX_BYTES if cls is TxMessage else MAX_FRAME_BYTES
    return min(1 + max_encoded_size(cls), limit)


FRAME_CAPS: dict[type[Record], int] = {cls: _frame_cap(cls) for cls in PEER_MESSAGE.by_cls}


def check_frame_size(frame: bytes) -> type[Record]:
    """The message type a frame's tag names, once its length is within that type's cap;
    DecodeError with a one-line reason otherwise.  Nothing past the tag is read."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    if len(frame) == 0:
        raise DecodeError("empty frame")
    cls = PEER_MESSAGE.by_tag.get(frame[0])
    if cls is None:
        raise DecodeError(f"unknown tag {frame[0]}")
    if len(frame) > FRAME_CAPS[cls]:
        raise DecodeError(f"{cls.__name__} frame of {len(frame)} bytes exceeds the cap of "
                          f"{FRAME_CAPS[cls]}")
    return cls


def encode_message(message: Record) -> bytes:
    """The frame for message; ValueError if it is not a peer message or exceeds its
    type's cap (peers would refuse it, and ban us for it)."""
    frame = PEER_MESSAGE.encode(message)
    cap = FRAME_CAPS[type(message)]
    if len(frame) > cap:
        raise ValueError(f"{type(message).__name__} of {len(frame)} bytes exceeds the frame "
                         f"cap of {cap}")
    return frame


def decode_message(frame: bytes) -> Record:
    """Strictly decode one frame; DecodeError for anything else, oversize refused unread."""
    check_frame_size(frame)
    return PEER_MESSAGE.decode(frame)


def message_id(frame: bytes) -> bytes:
    return crypto.sha256(frame)
