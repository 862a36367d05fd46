"""Every message peers exchange, as one tagged union of codec records.

A frame is exactly one encoded PEER_MESSAGE: a one-byte tag, then the record.
Frames are capped at MAX_FRAME_BYTES and the cap is checked before decoding, so
a peer cannot make us parse (or allocate for) more than that.  Gossiped messages
are identified by the SHA-256 of their frame; the encoding is canonical, so every
copy of one vote (or proposal, or transaction) has the same id on every node.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from node.types import crypto
from node.types.blocks import MAX_CHAIN_ID, Block, CommitCertificate
from node.types.votes import Vote
from node.types.codec import (HASH, PUBKEY, SIGNATURE, U64, DecodeError, ListOf, Nested, Reader,
                        Record, Tagged, Text, UInt)
from node.types.proposal import Proposal
from node.types.transactions import SignedTx

HANDSHAKE_DOMAIN = "handshake"
MAX_FRAME_BYTES = 8 * 1024 * 1024
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


def encode_message(message: Record) -> bytes:
    """The frame for message; ValueError if it is not a peer message or exceeds the cap."""
    frame = PEER_MESSAGE.encode(message)
    if len(frame) > MAX_FRAME_BYTES:
        raise ValueError(f"{type(message).__name__} of {len(frame)} bytes exceeds the frame "
                         f"cap of {MAX_FRAME_BYTES}")
    return frame


def decode_message(frame: bytes) -> Record:
    """Strictly decode one frame; DecodeError for anything else, oversize refused unread."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    if len(frame) > MAX_FRAME_BYTES:
        raise DecodeError(f"frame of {len(frame)} bytes exceeds the cap of {MAX_FRAME_BYTES}")
    return PEER_MESSAGE.decode(frame)


def message_id(frame: bytes) -> bytes:
    return crypto.sha256(frame)
