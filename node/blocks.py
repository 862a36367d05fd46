"""Blocks, votes and commit certificates.

A block's hash is the SHA-256 of its header's encoding; the header commits to the
transactions (Merkle root over their encodings), to the commit certificate of the
previous block, and to the state root after this block is applied.
"""
from __future__ import annotations

import dataclasses

from node import crypto
from node.codec import HASH, PUBKEY, SIGNATURE, U32, U64, ListOf, Nested, Record, Text
from node.merkle import merkle_root
from node.transactions import SignedTx
from node.votes import NIL_HASH, PRECOMMIT, Vote, VoteBody

MAX_CHAIN_ID = 64
MAX_BLOCK_TXS = 100_000
MAX_COMMIT_SIGNATURES = 1_000


@dataclasses.dataclass(frozen=True)
class BlockHeader(Record):
    chain_id: str
    height: int
    round: int  # the consensus round in which it was proposed
    time_ms: int
    prev_hash: bytes
    last_commit_hash: bytes
    tx_root: bytes
    state_root: bytes  # after applying this block
    proposer: bytes
    SCHEMA = (("chain_id", Text(MAX_CHAIN_ID)), ("height", U64), ("round", U32),
              ("time_ms", U64), ("prev_hash", HASH), ("last_commit_hash", HASH),
              ("tx_root", HASH), ("state_root", HASH), ("proposer", PUBKEY))

    @property
    def hash(self) -> bytes:
        return crypto.sha256(self.encode())


@dataclasses.dataclass(frozen=True)
class CommitSignature(Record):
    validator: bytes
    signature: bytes
    SCHEMA = (("validator", PUBKEY), ("signature", SIGNATURE))


@dataclasses.dataclass(frozen=True)
class CommitCertificate(Record):
    """Precommits for one block from validators holding more than 2/3 of the power."""
    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSignature, ...]
    SCHEMA = (("height", U64), ("round", U32), ("block_hash", HASH),
              ("signatures", ListOf(Nested(CommitSignature), MAX_COMMIT_SIGNATURES)))

    @property
    def hash(self) -> bytes:
        return crypto.sha256(self.encode())

    def vote_body(self) -> VoteBody:
        return VoteBody(kind=PRECOMMIT, height=self.height, round=self.round,
                        block_hash=self.block_hash)


def certificate_from_precommits(precommits: list[Vote]) -> CommitCertificate:
    """Gather precommits for one (height, round, block) into a certificate, ordered by key."""
    bodies = {v.body for v in precommits}
    if len(bodies) != 1 or next(iter(bodies)).kind != PRECOMMIT:
        raise ValueError("a certificate needs precommits for one and the same block")
    body = next(iter(bodies))
    signatures = tuple(CommitSignature(v.validator, v.signature)
                       for v in sorted(precommits, key=lambda v: v.validator))
    return CommitCertificate(height=body.height, round=body.round, block_hash=body.block_hash,
                             signatures=signatures)


EMPTY_COMMIT = CommitCertificate(height=0, round=0, block_hash=NIL_HASH, signatures=())


@dataclasses.dataclass(frozen=True)
class Block(Record):
    header: BlockHeader
    txs: tuple[SignedTx, ...]
    last_commit: CommitCertificate  # EMPTY_COMMIT in block 1
    SCHEMA = (("header", Nested(BlockHeader)), ("txs", ListOf(Nested(SignedTx), MAX_BLOCK_TXS)),
              ("last_commit", Nested(CommitCertificate)))

    @property
    def hash(self) -> bytes:
        return self.header.hash


def tx_root(txs: tuple[SignedTx, ...]) -> bytes:
    return merkle_root([tx.encode() for tx in txs])
