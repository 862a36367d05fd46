"""What the chain state holds: its key layout and the records stored under each key.

The state is a map from keys to canonical encodings: accounts, miners, auditors,
the committee and the committees of the last evidence window, the supply counters,
the model, each round's seeds, work commitments, audits and fraud records, the
validators punished for equivocation, and the verified work of each epoch, each kind
under its own key prefix.  Commitments and audit reports are stored as the
transactions' own payloads.
"""
from __future__ import annotations

import dataclasses

from node.types.blocks import CommitCertificate, CommitteeMember
from node.types.codec import HASH, PUBKEY, U16, U32, U64, ListOf, Nested, Record
from node.types.genesis import TrainingConfig
from node.uPoW.assignment import UnitChallenge, chooser_seed, unit_challenge

U64_MAX = (1 << 64) - 1  # the cap of every balance, bond and supply counter
MAX_COMMITTEE = 1000
# The evidence window spans at most one epoch, so at most two rotations; every other
# change removes a member seated within the window, and a removed member cannot return
# within it: at most a committee and the entrants of those two rotations.
MAX_COMMITTEE_CHANGES = 3 * MAX_COMMITTEE + 2
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
CARRY_PREFIX = b"o"
COMMITTEE_KEY = b"committee"
COMMITTEE_HISTORY_KEY = b"committee_history"
SUPPLY_KEY = b"supply"
MODEL_KEY = b"model"
COMMITMENT_KEY_LEN = 1 + 8 + 32 + 4
AUDIT_KEY_LEN = COMMITMENT_KEY_LEN + 4 + 32
AUDITOR_KEY_LEN = 1 + 32
WITHHELD_KEY_LEN = AUDIT_KEY_LEN
DELTA_CLAIM_KEY_LEN = COMMITMENT_KEY_LEN + 32
DISPUTE_KEY_LEN = AUDIT_KEY_LEN
WORK_COUNT_KEY_LEN = 1 + 8 + 32
CARRY_KEY_LEN = 1 + 32 + 4


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
class CarryRecord(Record):
    """What a miner's next unit of one index may carry: the end checkpoint (its leaf) of
    its last accepted unit of that index, the AdamW step there, and that unit's round
    (the record leaves the state with the round: node.state.retention)."""
    leaf: bytes
    step: int
    round: int
    SCHEMA = (("leaf", HASH), ("step", U64), ("round", U64))


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

    def without(self, pub_key: bytes) -> Committee:
        """This committee less the member pub_key, unless it is the last one: a chain
        without a committee could never decide another block."""
        kept = tuple(m for m in self.members if m.pub_key != pub_key)
        return Committee(kept) if kept else self


@dataclasses.dataclass(frozen=True)
class CommitteeChange(Record):
    """The committee before the change made by the block at `height` (a rotation, or a
    member removed for equivocation): it decided the blocks after the change before
    this one, up to and including `height`, and signed that block's commit, which the
    next block carries."""
    height: int
    members: tuple[CommitteeMember, ...]
    SCHEMA = (("height", U64), ("members", ListOf(Nested(CommitteeMember), MAX_COMMITTEE)))

    @property
    def committee(self) -> Committee:
        return Committee(self.members)


@dataclasses.dataclass(frozen=True)
class CommitteeHistory(Record):
    """The committee changes of the last evidence window, oldest first, one per height:
    what says which committee decided any height that evidence may still name."""
    changes: tuple[CommitteeChange, ...]
    SCHEMA = (("changes", ListOf(Nested(CommitteeChange), MAX_COMMITTEE_CHANGES)),)


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


@dataclasses.dataclass(frozen=True)
class ChallengeRecord(Record):
    """A round's challenge: who could be assigned to audit at the challenge block, sorted
    (a snapshot, so that later registrations do not move the round's assignments), and
    the choosers' seeds that draw every unit (node.uPoW.assignment.unit_challenge).

    A chooser is the proposer of a block of the round after the challenge block that
    carries its own precommit of the block before; its seed hashes that precommit's
    beacon (node.uPoW.assignment.chooser_seed), which its key alone fixes.  Choosers
    are taken in block order, each validator once, until their power exceeds a third
    of the committee's (committee_power): then one at least is honest, and its draw is
    one that no coalition below a third knows in advance or can steer.  No unit is
    drawn before that; a round that closes first rejects its units."""
    eligible: tuple[bytes, ...]
    choosers: tuple[bytes, ...]
    seeds: tuple[bytes, ...]
    chosen_power: int
    committee_power: int
    SCHEMA = (("eligible", ListOf(PUBKEY, MAX_ELIGIBLE_AUDITORS)), ("choosers", ListOf(PUBKEY, MAX_COMMITTEE)),
              ("seeds", ListOf(HASH, MAX_COMMITTEE)), ("chosen_power", U64), ("committee_power", U64))

    @classmethod
    def snapshot(cls, eligible: set[bytes], committee: Committee) -> ChallengeRecord:
        """The record before its first chooser: eligible as the challenge block leaves it."""
        return cls(tuple(sorted(eligible)), (), (), 0, committee.total_power)

    def drawn_seeds(self) -> tuple[bytes, ...] | None:
        """The seeds that draw every unit; None while the choosers hold a third or less."""
        return self.seeds if 3 * self.chosen_power > self.committee_power else None

    def unit_challenge(self, miner: bytes, unit: int, training: TrainingConfig) -> UnitChallenge | None:
        """The unit's draws; None while the choosers hold a third or less."""
        seeds = self.drawn_seeds()
        return None if seeds is None else unit_challenge(seeds, miner, unit, training, self.eligible)

    def after_block(self, chain_id: str, commit: CommitCertificate, proposer: bytes,
                    committee: Committee) -> ChallengeRecord:
        """The record after a block of its round proposed by proposer, carrying commit:
        with the proposer as a chooser if it is not one yet, the choosers do not hold a
        third yet, and the commit holds the proposer's own precommit; else this one."""
        if self.drawn_seeds() is not None or proposer in self.choosers:
            return self
        seed = chooser_seed(chain_id, commit, proposer)
        if seed is None:
            return self
        return dataclasses.replace(self, choosers=self.choosers + (proposer,), seeds=self.seeds + (seed,),
                                   chosen_power=self.chosen_power + committee.power_of(proposer))


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
class EquivocationRecord(Record):
    """A validator punished for equivocation by the block at `height`: that pays for every
    double vote it cast up to that height, and it may not re-enter the committee until
    the evidence window after it has passed."""
    height: int
    SCHEMA = (("height", U64),)


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


def carry_key(miner: bytes, unit: int) -> bytes:
    return CARRY_PREFIX + miner + unit.to_bytes(4, "big")


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


def equivocation_key(validator: bytes) -> bytes:
    return EQUIVOCATION_PREFIX + validator


def split_unit_key(key: bytes) -> tuple[bytes, int]:
    """(miner, unit) of a commitment, audit or fraud key."""
    return key[9:41], int.from_bytes(key[41:45], "big")


def split_audit_key(key: bytes) -> tuple[bytes, int, int, bytes]:
    """(miner, unit, segment, auditor) of an audit key."""
    return key[9:41], int.from_bytes(key[41:45], "big"), int.from_bytes(key[45:49], "big"), key[49:]
