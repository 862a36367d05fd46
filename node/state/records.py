"""What the chain state holds: its key layout and the records stored under each key.

The state is a map from keys to canonical encodings: accounts, miners, auditors,
the committee, the supply counters, the model, each round's seeds, work
commitments, audits and fraud records, equivocation evidence, and the verified
work of each epoch, each kind under its own key prefix.  Commitments, audit
reports and equivocation evidence are stored as the transactions' own payloads.
"""
from __future__ import annotations

import dataclasses

from node.types.blocks import CommitteeMember
from node.types.codec import HASH, PUBKEY, U16, U32, U64, ListOf, Nested, Record

U64_MAX = (1 << 64) - 1  # the cap of every balance, bond and supply counter
MAX_COMMITTEE = 1000
MAX_ELIGIBLE_AUDITORS = 1 << 20  # committee members and registered auditors at a challenge
UNMEASURED_LOSS = 0x7FC00000  # float32 NaN: the genesis model's eval loss is not measured

# Keys of one kind share a prefix and a length; a scan checks both, since the named
# keys (b"model", b"supply", b"committee...") begin with some of the prefixes.
ACCOUNT_PREFIX = b"a"
MINER_PREFIX = b"m"
AUDITOR_PREFIX = b"d"
COMMITMENT_PREFIX = b"w"
AUDIT_PREFIX = b"u"
FRAUD_PREFIX = b"f"
ROUND_SEED_PREFIX = b"s"
CHALLENGE_PREFIX = b"c"
WORK_COUNT_PREFIX = b"k"
EQUIVOCATION_PREFIX = b"e"
WITHHELD_PREFIX = b"x"
DELTA_CLAIM_PREFIX = b"y"
DISPUTE_PREFIX = b"v"
COMMITTEE_KEY = b"committee"
COMMITTEE_PREV_KEY = b"committee_prev"
SUPPLY_KEY = b"supply"
MODEL_KEY = b"model"
COMMITMENT_KEY_LEN = 1 + 8 + 32 + 4
AUDIT_KEY_LEN = COMMITMENT_KEY_LEN + 4 + 32
AUDITOR_KEY_LEN = 1 + 32
WITHHELD_KEY_LEN = AUDIT_KEY_LEN
DELTA_CLAIM_KEY_LEN = COMMITMENT_KEY_LEN + 32
DISPUTE_KEY_LEN = AUDIT_KEY_LEN
WORK_COUNT_KEY_LEN = 1 + 8 + 32


@dataclasses.dataclass(frozen=True)
class AccountRecord(Record):
    balance: int = 0
    nonce: int = 0
    bond: int = 0
    SCHEMA = (("balance", U64), ("nonce", U64), ("bond", U64))


@dataclasses.dataclass(frozen=True)
class MinerRecord(Record):
    units: int
    since_height: int
    SCHEMA = (("units", U16), ("since_height", U64))


@dataclasses.dataclass(frozen=True)
class AuditorRecord(Record):
    since_height: int
    SCHEMA = (("since_height", U64),)


@dataclasses.dataclass(frozen=True)
class Committee(Record):
    members: tuple[CommitteeMember, ...]
    SCHEMA = (("members", ListOf(Nested(CommitteeMember), MAX_COMMITTEE)),)

    def power_of(self, pub_key: bytes) -> int:
        return next((m.power for m in self.members if m.pub_key == pub_key), 0)

    @property
    def total_power(self) -> int:
        return sum(m.power for m in self.members)


@dataclasses.dataclass(frozen=True)
class CommitteeChange(Record):
    """The committee before the rotation at `height`: it signed that block's commit,
    which the next block carries."""
    height: int
    members: tuple[CommitteeMember, ...]
    SCHEMA = (("height", U64), ("members", ListOf(Nested(CommitteeMember), MAX_COMMITTEE)))


@dataclasses.dataclass(frozen=True)
class Supply(Record):
    """Integer accounting: balances + bonds = genesis + emitted - burned, always."""
    genesis: int
    emitted: int
    burned: int
    SCHEMA = (("genesis", U64), ("emitted", U64), ("burned", U64))


@dataclasses.dataclass(frozen=True)
class ModelRecord(Record):
    """The model the units of `round` train from, and its held-out eval loss (float32 bits)."""
    round: int
    root: bytes
    eval_loss_bits: int
    SCHEMA = (("round", U64), ("root", HASH), ("eval_loss_bits", U32))


@dataclasses.dataclass(frozen=True)
class RoundSeed(Record):
    """The hash of the block that starts a round: it seeds the round's work units."""
    hash: bytes
    SCHEMA = (("hash", HASH),)


NO_CHOOSER = bytes(32)  # a committee of one: its member chooses everything anyway
NOT_DRAWN = bytes(32)


@dataclasses.dataclass(frozen=True)
class ChallengeRecord(Record):
    """The round's challenge seeds (node.uPoW.assignment.challenge_seed) and who could be
    assigned to audit at the challenge block, sorted: a snapshot, so that later
    registrations do not move the round's assignments.

    hash draws every unit but the chooser's.  The chooser proposed the block carrying
    the challenge block's commit, so it chose which quorum of precommits went into
    hash; its own units draw from chooser_hash instead, the seed of the commit carried
    by the first later block of the round that another validator proposed (NOT_DRAWN
    until then).  So no proposer picks its own units' draw."""
    hash: bytes
    eligible: tuple[bytes, ...]
    chooser: bytes
    chooser_hash: bytes
    SCHEMA = (("hash", HASH), ("eligible", ListOf(PUBKEY, MAX_ELIGIBLE_AUDITORS)), ("chooser", PUBKEY),
              ("chooser_hash", HASH))

    @classmethod
    def drawn(cls, seed: bytes, eligible: set[bytes], proposer: bytes, committee_size: int) -> ChallengeRecord:
        """The record the block after the challenge block makes, proposed by proposer."""
        chooser = proposer if committee_size > 1 else NO_CHOOSER
        return cls(seed, tuple(sorted(eligible)), chooser, NOT_DRAWN)

    def awaits_seed_from(self, proposer: bytes) -> bool:
        """Whether a later block of the round by proposer draws the chooser's seed."""
        return self.chooser != NO_CHOOSER and self.chooser_hash == NOT_DRAWN and proposer != self.chooser

    def seed_for(self, miner: bytes) -> bytes | None:
        """The seed that draws miner's units: None while it is not drawn yet."""
        if miner != self.chooser:
            return self.hash
        return None if self.chooser_hash == NOT_DRAWN else self.chooser_hash


@dataclasses.dataclass(frozen=True)
class FraudRecord(Record):
    """A unit proven fraudulent: who proved it, on which segment."""
    prover: bytes
    segment: int
    SCHEMA = (("prover", PUBKEY), ("segment", U32))


@dataclasses.dataclass(frozen=True)
class DisputeRecord(Record):
    """An audit report whose evidence was disproven: who disproved it."""
    prover: bytes
    SCHEMA = (("prover", PUBKEY),)


@dataclasses.dataclass(frozen=True)
class WorkCount(Record):
    """A miner's accepted units in one epoch: what ranks the next committee."""
    units: int
    SCHEMA = (("units", U32),)


def round_bytes(round_: int) -> bytes:
    """A round (or epoch) number as it appears in keys: big-endian, so keys sort by it."""
    return round_.to_bytes(8, "big")


def account_key(address: bytes) -> bytes:
    return ACCOUNT_PREFIX + address


def miner_key(address: bytes) -> bytes:
    return MINER_PREFIX + address


def auditor_key(pub_key: bytes) -> bytes:
    return AUDITOR_PREFIX + pub_key


def commitment_key(round_: int, miner: bytes, unit: int) -> bytes:
    return COMMITMENT_PREFIX + round_bytes(round_) + miner + unit.to_bytes(4, "big")


def audit_key(round_: int, miner: bytes, unit: int, segment: int, auditor: bytes) -> bytes:
    return (AUDIT_PREFIX + round_bytes(round_) + miner + unit.to_bytes(4, "big")
            + segment.to_bytes(4, "big") + auditor)


def withheld_key(round_: int, miner: bytes, unit: int, segment: int, auditor: bytes) -> bytes:
    return WITHHELD_PREFIX + audit_key(round_, miner, unit, segment, auditor)[1:]


def dispute_key(round_: int, miner: bytes, unit: int, segment: int, auditor: bytes) -> bytes:
    return DISPUTE_PREFIX + audit_key(round_, miner, unit, segment, auditor)[1:]


def delta_claim_key(round_: int, miner: bytes, unit: int, validator: bytes) -> bytes:
    return DELTA_CLAIM_PREFIX + commitment_key(round_, miner, unit)[1:] + validator


def fraud_key(round_: int, miner: bytes, unit: int) -> bytes:
    return FRAUD_PREFIX + round_bytes(round_) + miner + unit.to_bytes(4, "big")


def round_seed_key(round_: int) -> bytes:
    return ROUND_SEED_PREFIX + round_bytes(round_)


def challenge_key(round_: int) -> bytes:
    return CHALLENGE_PREFIX + round_bytes(round_)


def work_count_key(epoch: int, miner: bytes) -> bytes:
    return WORK_COUNT_PREFIX + round_bytes(epoch) + miner


def equivocation_key(validator: bytes, height: int, round_: int, kind: int) -> bytes:
    """One key per (validator, step) punished, so that a step is punished once."""
    return (EQUIVOCATION_PREFIX + validator + height.to_bytes(8, "big") + round_.to_bytes(4, "big")
            + bytes([kind]))


def split_unit_key(key: bytes) -> tuple[bytes, int]:
    """(miner, unit) of a commitment, audit or fraud key."""
    return key[9:41], int.from_bytes(key[41:45], "big")


def split_audit_key(key: bytes) -> tuple[bytes, int, int, bytes]:
    """(miner, unit, segment, auditor) of an audit key."""
    return key[9:41], int.from_bytes(key[41:45], "big"), int.from_bytes(key[45:49], "big"), key[49:]
