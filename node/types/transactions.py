"""Transactions: what accounts sign and blocks carry.

A transaction is an envelope (sender, nonce, payload) signed by the sender's
ed25519 key under the "tx" domain and the chain id.  The payload is one of the
kinds below, introduced by a one-byte tag.  Addresses are ed25519 public keys.
"""
from __future__ import annotations

import collections
import dataclasses
import time

from node.types import crypto
from node.types.votes import Vote
from node.types.codec import (HASH, PUBKEY, SIGNATURE, U16, U32, U64, DecodeError, ListOf,
                        Nested, Record, Tagged)

TX_DOMAIN = "tx"
VERIFIED_CACHE = 200_000  # transactions whose signature this process already checked
# ... within this many seconds: a transaction meets a node in its pool and again in a block
# minutes later, and a forgotten one costs one more check, not the memory of every one
VERIFIED_MAX_AGE_S = 900.0
MAX_LOSS_TRACE = 4096  # float32 loss values of one unit, as IEEE bits
MAX_PROOF_DEPTH = 64  # Merkle siblings: trees of up to 2^64 checkpoints
MAX_SEGMENTS = MAX_LOSS_TRACE  # a segment is at least one step


@dataclasses.dataclass(frozen=True)
class Transfer(Record):
    to: bytes
    amount: int
    SCHEMA = (("to", PUBKEY), ("amount", U64))


@dataclasses.dataclass(frozen=True)
class Bond(Record):
    """Move amount from the sender's balance to its bond."""
    amount: int
    SCHEMA = (("amount", U64),)


@dataclasses.dataclass(frozen=True)
class Unbond(Record):
    """Move amount from the sender's bond back to its balance."""
    amount: int
    SCHEMA = (("amount", U64),)


MAX_MINER_UNITS = 64  # units one miner may take a round
NO_CARRY = bytes(32)  # a unit whose AdamW moments start from zero


@dataclasses.dataclass(frozen=True)
class RegisterMiner(Record):
    """Register the sender as a miner taking `units` work units per round; a registered
    miner sends it again to take more."""
    units: int
    SCHEMA = (("units", U16),)


@dataclasses.dataclass(frozen=True)
class RegisterAuditor(Record):
    """Register the sender as an auditor, eligible to be assigned units to check."""
    SCHEMA = ()


@dataclasses.dataclass(frozen=True)
class WorkCommitment(Record):
    """A miner's commitment to one trained unit (DESIGN.md §2, train phase)."""
    round: int
    unit: int
    shard: int
    start_root: bytes  # model root the unit started from
    checkpoint_root: bytes  # Merkle root over the checkpoint state hashes
    checkpoint_count: int  # leaves: the start state, then the state after each segment
    leaves_hash: bytes  # SHA-256 of the leaves blob (the hashes the root is built over)
    delta_hash: bytes  # SHA-256 of the delta blob
    loss_trace: tuple[int, ...]  # float32 bits of the loss at each step
    kernel_version: int
    evidence_locks: tuple[bytes, ...]  # each segment's lock on its gradient digest
    # the optimizer state leaf 0 carries: the end checkpoint (leaf) of the miner's last
    # accepted unit of this index and its AdamW step, or NO_CARRY and 0 for fresh moments
    carried_leaf: bytes = NO_CARRY
    start_step: int = 0
    SCHEMA = (("round", U64), ("unit", U32), ("shard", U32), ("start_root", HASH),
              ("checkpoint_root", HASH), ("checkpoint_count", U32), ("leaves_hash", HASH),
              ("delta_hash", HASH),
              ("loss_trace", ListOf(U32, MAX_LOSS_TRACE)), ("kernel_version", U32),
              ("evidence_locks", ListOf(HASH, MAX_SEGMENTS)), ("carried_leaf", HASH), ("start_step", U64))


@dataclasses.dataclass(frozen=True)
class AuditReport(Record):
    """An auditor's passing result of re-executing one segment of a miner's unit: the
    state hash it computed, which is the committed leaf segment+1 (proof included), and
    its evidence of the replay (node/uPoW/evidence.py), which the miner may dispute.
    A failing re-execution is reported as a FraudProof instead."""
    round: int
    miner: bytes
    unit: int
    segment: int
    result_hash: bytes  # the state hash the auditor computed at the segment's end
    result_proof: tuple[bytes, ...]  # inclusion of result_hash as leaf segment+1
    evidence: bytes  # report_evidence(auditor, the segment's gradient digest)
    SCHEMA = (("round", U64), ("miner", PUBKEY), ("unit", U32), ("segment", U32),
              ("result_hash", HASH), ("result_proof", ListOf(HASH, MAX_PROOF_DEPTH)),
              ("evidence", HASH))


@dataclasses.dataclass(frozen=True)
class FraudProof(Record):
    """Evidence that a committed checkpoint does not follow from the one before it:
    both leaves with their Merkle proofs, and the hash the segment really gives.

    Segment s < n (n = checkpoint_count - 1 segments) claims leaf s+1 is not what
    re-executing from leaf s gives (or that leaf s is not a valid state of this unit
    at that step).  Segment n claims the delta does not follow from the last leaf:
    start_hash is leaf n, claimed_end_hash the committed delta hash (end_proof
    empty), computed_end_hash the hash of the delta the last leaf really gives."""
    round: int
    miner: bytes
    unit: int
    segment: int
    start_hash: bytes
    start_proof: tuple[bytes, ...]
    claimed_end_hash: bytes
    end_proof: tuple[bytes, ...]
    computed_end_hash: bytes
    SCHEMA = (("round", U64), ("miner", PUBKEY), ("unit", U32), ("segment", U32),
              ("start_hash", HASH), ("start_proof", ListOf(HASH, MAX_PROOF_DEPTH)),
              ("claimed_end_hash", HASH), ("end_proof", ListOf(HASH, MAX_PROOF_DEPTH)),
              ("computed_end_hash", HASH))


@dataclasses.dataclass(frozen=True)
class WithheldClaim(Record):
    """An assigned auditor's word that it could not fetch what one challenged segment of
    a unit needs (the leaves, the start checkpoint or, for the last segment, the delta).
    Unless another auditor then reports the segment passing, the miner is slashed at
    the round's close: withholding costs what fraud costs (DESIGN.md §2)."""
    round: int
    miner: bytes
    unit: int
    segment: int
    SCHEMA = (("round", U64), ("miner", PUBKEY), ("unit", U32), ("segment", U32))


@dataclasses.dataclass(frozen=True)
class DeltaWithheld(Record):
    """A committee member's word that it cannot fetch the delta of a unit its auditor
    attested.  Claims of a third of the committee's power exclude the unit from the
    close, which slashes its miner, so a withheld delta cannot stall the close."""
    round: int
    miner: bytes
    unit: int
    SCHEMA = (("round", U64), ("miner", PUBKEY), ("unit", U32))


@dataclasses.dataclass(frozen=True)
class EvidenceDispute(Record):
    """Proof that an audit report's evidence is wrong: the segment's gradient digest,
    which matches the miner's committed lock but not the report, so its auditor never
    replayed the segment.  The report no longer counts, the unit opens to fallback
    audits, and the auditor is slashed at the close, the disputer taking the bounty."""
    round: int
    miner: bytes
    unit: int
    segment: int
    auditor: bytes
    gradient_digest: bytes
    SCHEMA = (("round", U64), ("miner", PUBKEY), ("unit", U32), ("segment", U32),
              ("auditor", PUBKEY), ("gradient_digest", HASH))


@dataclasses.dataclass(frozen=True)
class DoubleSignEvidence(Record):
    """Two votes one validator signed for different blocks at the same height, round
    and step: proof of equivocation, which costs the validator part of its bond."""
    first: Vote
    second: Vote
    SCHEMA = (("first", Nested(Vote)), ("second", Nested(Vote)))


PAYLOAD = Tagged({1: Transfer, 2: Bond, 3: Unbond, 4: RegisterMiner, 5: WorkCommitment,
                  6: AuditReport, 7: FraudProof, 8: DoubleSignEvidence, 9: RegisterAuditor,
                  10: WithheldClaim, 11: DeltaWithheld, 12: EvidenceDispute})


@dataclasses.dataclass(frozen=True)
class TxBody(Record):
    """The signed part of a transaction.  fee is paid by the sender when the
    transaction applies (at least the genesis's economics.min_tx_fee)."""
    sender: bytes
    nonce: int
    fee: int
    payload: Record
    SCHEMA = (("sender", PUBKEY), ("nonce", U64), ("fee", U64), ("payload", PAYLOAD))


@dataclasses.dataclass(frozen=True)
class SignedTx(Record):
    body: TxBody
    signature: bytes
    SCHEMA = (("body", Nested(TxBody)), ("signature", SIGNATURE))

    @property
    def hash(self) -> bytes:
        return crypto.sha256(self.encode())

    def signature_valid(self, chain_id: str) -> bool:
        # A node meets each transaction in its mempool and again in a block: checking
        # the same bytes (the hash covers body and signature) once is enough.
        key, now = (self.hash, chain_id), time.monotonic()
        valid = key in _verified or crypto.verify(self.body.sender, self.signature, TX_DOMAIN, chain_id,
                                                  self.body.encode())
        if valid:
            _verified[key] = now
            _verified.move_to_end(key)
            while len(_verified) > VERIFIED_CACHE or next(iter(_verified.values())) < now - VERIFIED_MAX_AGE_S:
                _verified.popitem(last=False)
        return valid


# (tx hash, chain id) -> when last checked, the oldest first
_verified: collections.OrderedDict[tuple[bytes, str], float] = collections.OrderedDict()


def sign_tx(key: crypto.SigningKey, chain_id: str, nonce: int, payload: Record, fee: int) -> SignedTx:
    body = TxBody(sender=key.public_key, nonce=nonce, fee=fee, payload=payload)
    return SignedTx(body=body, signature=key.sign(TX_DOMAIN, chain_id, body.encode()))


def decode_tx(data: bytes, max_bytes: int) -> SignedTx:
    """Decode a transaction from the wire, refusing oversize input before decoding."""
    if len(data) > max_bytes:
        raise DecodeError(f"transaction of {len(data)} bytes exceeds the cap of {max_bytes}")
    return SignedTx.decode(data)
