"""Blocks, votes and commit certificates.

A block's hash is the SHA-256 of its header's encoding; the header commits to the
transactions (Merkle root over their encodings), to the commit certificate of the
previous block, to the round close the block carries (a round's closing block
only), and to the state root after this block is applied.
"""
from __future__ import annotations

import dataclasses

from node.types import crypto, vrf
from node.types.codec import HASH, PUBKEY, SIGNATURE, U8, U32, U64, FixedBytes, ListOf, Nested, Record, Text
from node.types.merkle import merkle_root
from node.types.transactions import SignedTx
from node.types.votes import NIL_HASH, PRECOMMIT, Vote, VoteBody

MAX_CHAIN_ID = 64
MAX_BLOCK_TXS = 100_000
MAX_COMMIT_SIGNATURES = 1_000
MAX_ROUND_UNITS = 100_000
NO_CLOSE = bytes(32)  # close_hash of a block that closes no round

# the outcome of a unit at its round's close: WITHHELD is slashed for data it never served
ACCEPTED, REJECTED, SLASHED, WITHHELD = 1, 2, 3, 4
# why a round close pays an account
PAID_FOR_UNITS, PAID_FOR_AUDITS, PAID_AS_PROPOSER = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class UnitOutcome(Record):
    miner: bytes
    unit: int
    status: int  # ACCEPTED, REJECTED, SLASHED or WITHHELD
    SCHEMA = (("miner", PUBKEY), ("unit", U32), ("status", U8))


@dataclasses.dataclass(frozen=True)
class Payment(Record):
    to: bytes
    reason: int  # PAID_FOR_UNITS, PAID_FOR_AUDITS or PAID_AS_PROPOSER
    amount: int
    SCHEMA = (("to", PUBKEY), ("reason", U8), ("amount", U64))


@dataclasses.dataclass(frozen=True)
class CommitteeMember(Record):
    pub_key: bytes
    power: int
    SCHEMA = (("pub_key", PUBKEY), ("power", U64))


@dataclasses.dataclass(frozen=True)
class RoundClose(Record):
    """What a round's closing block decides (DESIGN.md §2, aggregate): every committed
    unit's outcome in (miner, unit) order, the new model's root and held-out eval loss
    (float32 bits), the payments, and at an epoch boundary the next committee (empty
    otherwise).  Validators recompute all of it and refuse a block that differs."""
    round: int
    units: tuple[UnitOutcome, ...]
    model_root: bytes
    eval_loss_bits: int
    payments: tuple[Payment, ...]
    next_committee: tuple[CommitteeMember, ...]
    SCHEMA = (("round", U64), ("units", ListOf(Nested(UnitOutcome), MAX_ROUND_UNITS)),
              ("model_root", HASH), ("eval_loss_bits", U32),
              ("payments", ListOf(Nested(Payment), 3 * MAX_ROUND_UNITS)),
              ("next_committee", ListOf(Nested(CommitteeMember), MAX_COMMIT_SIGNATURES)))

    @property
    def hash(self) -> bytes:
        return crypto.sha256(self.encode())


@dataclasses.dataclass(frozen=True)
class BlockHeader(Record):
    chain_id: str
    height: int
    round: int  # the consensus round in which it was proposed
    time_ms: int
    prev_hash: bytes
    last_commit_hash: bytes
    tx_root: bytes
    close_hash: bytes  # hash of the block's RoundClose, NO_CLOSE if it has none
    state_root: bytes  # after applying this block
    proposer: bytes
    SCHEMA = (("chain_id", Text(MAX_CHAIN_ID)), ("height", U64), ("round", U32),
              ("time_ms", U64), ("prev_hash", HASH), ("last_commit_hash", HASH),
              ("tx_root", HASH), ("close_hash", HASH), ("state_root", HASH),
              ("proposer", PUBKEY))

    @property
    def hash(self) -> bytes:
        return crypto.sha256(self.encode())


@dataclasses.dataclass(frozen=True)
class CommitSignature(Record):
    """One precommit for the block: its signature and the signer's beacon (VRF proof)."""
    validator: bytes
    signature: bytes
    beacon: bytes
    SCHEMA = (("validator", PUBKEY), ("signature", SIGNATURE), ("beacon", FixedBytes(vrf.PROOF_SIZE)))


@dataclasses.dataclass(frozen=True)
class CommitCertificate(Record):
    """Precommits for one block from validators holding more than 2/3 of the power, in
    ascending order of validator key."""
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
    signatures = tuple(CommitSignature(v.validator, v.signature, v.beacon)
                       for v in sorted(precommits, key=lambda v: v.validator))
    return CommitCertificate(height=body.height, round=body.round, block_hash=body.block_hash,
                             signatures=signatures)


EMPTY_COMMIT = CommitCertificate(height=0, round=0, block_hash=NIL_HASH, signatures=())


@dataclasses.dataclass(frozen=True)
class Block(Record):
    header: BlockHeader
    txs: tuple[SignedTx, ...]
    last_commit: CommitCertificate  # EMPTY_COMMIT in block 1
    close: tuple[RoundClose, ...] = ()  # one RoundClose in a round's closing block
    SCHEMA = (("header", Nested(BlockHeader)), ("txs", ListOf(Nested(SignedTx), MAX_BLOCK_TXS)),
              ("last_commit", Nested(CommitCertificate)), ("close", ListOf(Nested(RoundClose), 1)))

    @property
    def hash(self) -> bytes:
        return self.header.hash


def close_hash(close: tuple[RoundClose, ...]) -> bytes:
    return close[0].hash if close else NO_CLOSE


def tx_root(txs: tuple[SignedTx, ...]) -> bytes:
    return merkle_root([tx.encode() for tx in txs])
