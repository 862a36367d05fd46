"""The chain state and its transition function.

The state is a map from keys to canonical encodings: accounts, miners, auditors,
the committee, the supply counters, the model, each round's seeds, work
commitments, audits and fraud records, and the verified work of each epoch, each
kind under its own key prefix.  Its root is the Merkle root over (key, value)
pairs in key order, so every node computes the same root from the same entries.

Changes happen on a Transition, an overlay over the state for one block: a
transaction that fails leaves the overlay as it was, and a block either commits
all of its overlay's writes or none.  A block's hash is not known while it
executes, so a round's seeds are the previous block's hash, recorded by the
block after it: the round start hash by a round's first block, the challenge
hash by the block after the challenge block (DESIGN.md §2).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterable

from node.types.blocks import (ACCEPTED, PAID_AS_PROPOSER, PAID_FOR_AUDITS, PAID_FOR_UNITS, REJECTED,
                         SLASHED, Block, CommitteeMember, Payment, RoundClose, UnitOutcome)
from node.types.codec import HASH, PUBKEY, U16, U32, U64, ListOf, Nested, Record
from node.types.genesis import Genesis
from node.types.merkle import leaf_hash, root_of_leaf_hashes, verify_inclusion
from node.types.transactions import (AuditReport, Bond, DoubleSignEvidence, FraudProof, RegisterAuditor,
                               RegisterMiner, SignedTx, Transfer, Unbond, WorkCommitment)
from node.uPoW.assignment import assign_unit, assigned_auditors, challenged_segments
from node.uPoW.model_state import genesis_model_root
from node.uPoW.oracle import KERNEL_VERSION, WorkOracle
from node.uPoW.rounds import RoundSchedule

U64_MAX = (1 << 64) - 1
BPS = 10_000
MAX_MINER_UNITS = 64
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
COMMITTEE_KEY = b"committee"
COMMITTEE_PREV_KEY = b"committee_prev"
SUPPLY_KEY = b"supply"
MODEL_KEY = b"model"
COMMITMENT_KEY_LEN = 1 + 8 + 32 + 4
AUDIT_KEY_LEN = COMMITMENT_KEY_LEN + 4 + 32
AUDITOR_KEY_LEN = 1 + 32
WORK_COUNT_KEY_LEN = 1 + 8 + 32


@dataclasses.dataclass(frozen=True)
class Account(Record):
    balance: int = 0
    nonce: int = 0
    bond: int = 0
    SCHEMA = (("balance", U64), ("nonce", U64), ("bond", U64))


@dataclasses.dataclass(frozen=True)
class Miner(Record):
    units: int
    since_height: int
    SCHEMA = (("units", U16), ("since_height", U64))


@dataclasses.dataclass(frozen=True)
class Auditor(Record):
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

    @property
    def expected_total(self) -> int:
        return self.genesis + self.emitted - self.burned


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
    """The challenge block's hash and who could be assigned to audit then, sorted: a
    snapshot, so that later registrations do not move the round's assignments."""
    hash: bytes
    eligible: tuple[bytes, ...]
    SCHEMA = (("hash", HASH), ("eligible", ListOf(PUBKEY, MAX_ELIGIBLE_AUDITORS)))


@dataclasses.dataclass(frozen=True)
class FraudRecord(Record):
    """A unit proven fraudulent: who proved it, on which segment."""
    prover: bytes
    segment: int
    SCHEMA = (("prover", PUBKEY), ("segment", U32))


@dataclasses.dataclass(frozen=True)
class WorkCount(Record):
    """A miner's accepted units in one epoch: what ranks the next committee."""
    units: int
    SCHEMA = (("units", U32),)


class BlockError(Exception):
    """A block whose transactions or round close cannot be applied; the message says why."""


class TxError(Exception):
    """A transaction that cannot be applied; reason is a stable code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def _round_bytes(round_: int) -> bytes:
    return round_.to_bytes(8, "big")


def commitment_key(round_: int, miner: bytes, unit: int) -> bytes:
    return COMMITMENT_PREFIX + _round_bytes(round_) + miner + unit.to_bytes(4, "big")


def audit_key(round_: int, miner: bytes, unit: int, segment: int, auditor: bytes) -> bytes:
    return (AUDIT_PREFIX + _round_bytes(round_) + miner + unit.to_bytes(4, "big")
            + segment.to_bytes(4, "big") + auditor)


def fraud_key(round_: int, miner: bytes, unit: int) -> bytes:
    return FRAUD_PREFIX + _round_bytes(round_) + miner + unit.to_bytes(4, "big")


def round_seed_key(round_: int) -> bytes:
    return ROUND_SEED_PREFIX + _round_bytes(round_)


def challenge_key(round_: int) -> bytes:
    return CHALLENGE_PREFIX + _round_bytes(round_)


def auditor_key(pub_key: bytes) -> bytes:
    return AUDITOR_PREFIX + pub_key


def work_count_key(epoch: int, miner: bytes) -> bytes:
    return WORK_COUNT_PREFIX + epoch.to_bytes(8, "big") + miner


def _split_unit_key(key: bytes) -> tuple[bytes, int]:
    """(miner, unit) of a commitment, audit or fraud key."""
    return key[9:41], int.from_bytes(key[41:45], "big")


def _split_audit_key(key: bytes) -> tuple[bytes, int, int, bytes]:
    """(miner, unit, segment, auditor) of an audit key."""
    return key[9:41], int.from_bytes(key[41:45], "big"), int.from_bytes(key[45:49], "big"), key[49:]


def _entry_hash(key: bytes, value: bytes) -> bytes:
    return leaf_hash(len(key).to_bytes(2, "big") + key + value)


def state_digest(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The state root over (key, value) entries: the Merkle root in key order."""
    return root_of_leaf_hashes([_entry_hash(k, v) for k, v in sorted(entries)])


class ChainState:
    """The committed state: encoded entries by key, and the root over them."""

    def __init__(self, entries: dict[bytes, bytes]):
        self.entries = dict(entries)
        # each entry's leaf hash, kept so a block rehashes only what it changed
        self._hashes = {k: _entry_hash(k, v) for k, v in self.entries.items()}

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> "ChainState":
        entries: dict[bytes, bytes] = {}
        total = 0
        for account in genesis.accounts:
            entries[ACCOUNT_PREFIX + account.address] = Account(
                balance=account.balance, bond=account.bond).encode()
            total += account.balance + account.bond
        members = tuple(CommitteeMember(v.pub_key, v.power) for v in genesis.validators)
        entries[COMMITTEE_KEY] = Committee(members).encode()
        entries[SUPPLY_KEY] = Supply(genesis=total, emitted=0, burned=0).encode()
        entries[MODEL_KEY] = ModelRecord(0, genesis_model_root(genesis), UNMEASURED_LOSS).encode()
        return cls(entries)

    def root(self) -> bytes:
        return self.root_after({})

    def root_after(self, writes: dict[bytes, bytes | None]) -> bytes:
        """The root this state would have with writes applied (None deletes)."""
        hashes = dict(self._hashes)
        for key, value in writes.items():
            if value is None:
                hashes.pop(key, None)
            else:
                hashes[key] = _entry_hash(key, value)
        return root_of_leaf_hashes([hashes[k] for k in sorted(hashes)])

    def apply_writes(self, writes: dict[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.entries.pop(key, None)
                self._hashes.pop(key, None)
            else:
                self.entries[key] = value
                self._hashes[key] = _entry_hash(key, value)

    def keys(self, prefix: bytes, length: int) -> list[bytes]:
        """The keys of one kind (this prefix and length), in key order."""
        return sorted(k for k in self.entries if len(k) == length and k.startswith(prefix))

    def _get(self, key: bytes, cls: type[Record]) -> Record | None:
        raw = self.entries.get(key)
        return cls.decode(raw) if raw is not None else None

    def account(self, address: bytes) -> Account:
        return self._get(ACCOUNT_PREFIX + address, Account) or Account()

    def miner(self, address: bytes) -> Miner | None:
        return self._get(MINER_PREFIX + address, Miner)

    def committee(self) -> Committee:
        return self._get(COMMITTEE_KEY, Committee)

    def previous_committee(self) -> CommitteeChange | None:
        """The committee before the latest rotation, with the height of that rotation."""
        return self._get(COMMITTEE_PREV_KEY, CommitteeChange)

    def supply(self) -> Supply:
        return self._get(SUPPLY_KEY, Supply)

    def model(self) -> ModelRecord:
        return self._get(MODEL_KEY, ModelRecord)

    def is_auditor(self, pub_key: bytes) -> bool:
        return auditor_key(pub_key) in self.entries

    def round_start_hash(self, round_: int) -> bytes | None:
        seed = self._get(round_seed_key(round_), RoundSeed)
        return seed.hash if seed is not None else None

    def challenge(self, round_: int) -> ChallengeRecord | None:
        return self._get(challenge_key(round_), ChallengeRecord)

    def fraud_record(self, round_: int, miner: bytes, unit: int) -> FraudRecord | None:
        return self._get(fraud_key(round_, miner, unit), FraudRecord)

    def work_count(self, epoch: int, miner: bytes) -> int:
        count = self._get(work_count_key(epoch, miner), WorkCount)
        return count.units if count is not None else 0

    def round_commitments(self, round_: int) -> list[tuple[bytes, int, WorkCommitment]]:
        """(miner, unit, commitment) of every unit committed in round_, in (miner, unit) order."""
        return [(*_split_unit_key(k), WorkCommitment.decode(self.entries[k]))
                for k in self.keys(COMMITMENT_PREFIX + _round_bytes(round_), COMMITMENT_KEY_LEN)]

    def round_audits(self, round_: int) -> list[tuple[bytes, int, int, bytes]]:
        """(miner, unit, segment, auditor) of every audit report of round_, in that order."""
        return [_split_audit_key(k)
                for k in self.keys(AUDIT_PREFIX + _round_bytes(round_), AUDIT_KEY_LEN)]

    def total_holdings(self) -> int:
        """Sum of every balance and bond (the left side of the supply invariant)."""
        return sum(a.balance + a.bond for a in
                   (Account.decode(v) for k, v in self.entries.items() if k[:1] == ACCOUNT_PREFIX))


@dataclasses.dataclass(frozen=True)
class _Unit:
    """One committed unit at its round's close."""
    outcome: UnitOutcome
    commitment: WorkCommitment
    auditors: tuple[bytes, ...]  # one entry per audit report on the unit


class Transition:
    """Pending changes over a ChainState for one block at height, whose parent has
    hash prev_hash.  The oracle answers what needs training compute: fraud proofs
    and round closes."""

    def __init__(self, state: ChainState, genesis: Genesis, height: int, prev_hash: bytes,
                 oracle: WorkOracle):
        self.state = state
        self.chain_id = genesis.chain_id
        self.economics = genesis.economics
        self.training = genesis.training
        self.consensus = genesis.consensus
        self.schedule = RoundSchedule.from_genesis(genesis)
        self.height = height
        self.oracle = oracle
        # records written by this block, encoded only when the block is stored
        self._pending: dict[bytes, Record | None] = {}
        # committed entries decoded so far, so a block decodes each one it touches once
        self._decoded: dict[bytes, Record] = {}
        # previous values of the keys the current transaction wrote, to roll it back
        self._undo: dict[bytes, Record | None | object] = {}
        self._record_seeds(prev_hash)

    @property
    def writes(self) -> dict[bytes, bytes | None]:
        """This block's changes as encoded state entries (None deletes)."""
        return {k: None if r is None else r.encode() for k, r in self._pending.items()}

    @property
    def segments(self) -> int:
        """Segments per unit: a unit has segments + 1 checkpoints."""
        return self.training.steps_per_unit // self.training.checkpoint_every

    # -- reads through the overlay

    def _record(self, key: bytes, cls: type[Record]) -> Record | None:
        if key in self._pending:
            return self._pending[key]
        record = self._decoded.get(key)
        if record is None:
            raw = self.state.entries.get(key)
            if raw is None:
                return None
            record = self._decoded[key] = cls.decode(raw)
        return record

    def _keys(self, prefix: bytes, length: int) -> list[bytes]:
        keys = set(self.state.keys(prefix, length))
        for key, record in self._pending.items():
            if len(key) == length and key.startswith(prefix):
                if record is None:
                    keys.discard(key)
                else:
                    keys.add(key)
        return sorted(keys)

    def _exists(self, key: bytes) -> bool:
        if key in self._pending:
            return self._pending[key] is not None
        return key in self.state.entries

    def account(self, address: bytes) -> Account:
        return self._record(ACCOUNT_PREFIX + address, Account) or Account()

    def miner(self, address: bytes) -> Miner | None:
        return self._record(MINER_PREFIX + address, Miner)

    def committee(self) -> Committee:
        return self._record(COMMITTEE_KEY, Committee)

    def supply(self) -> Supply:
        return self._record(SUPPLY_KEY, Supply)

    def model(self) -> ModelRecord:
        return self._record(MODEL_KEY, ModelRecord)

    def commitment(self, round_: int, miner: bytes, unit: int) -> WorkCommitment | None:
        return self._record(commitment_key(round_, miner, unit), WorkCommitment)

    def round_start_hash(self, round_: int) -> bytes | None:
        """Recorded by the round's first block, before any transaction of the round."""
        seed = self._record(round_seed_key(round_), RoundSeed)
        return seed.hash if seed is not None else None

    def challenge(self, round_: int) -> ChallengeRecord | None:
        """Recorded by the first block of the audit window, before its transactions."""
        return self._record(challenge_key(round_), ChallengeRecord)

    def _work_count(self, epoch: int, miner: bytes) -> int:
        count = self._record(work_count_key(epoch, miner), WorkCount)
        return count.units if count is not None else 0

    # -- writes

    def _put(self, key: bytes, record: Record) -> None:
        if key not in self._undo:
            self._undo[key] = self._pending.get(key, _ABSENT)
        self._pending[key] = record

    def _put_account(self, address: bytes, account: Account) -> None:
        self._put(ACCOUNT_PREFIX + address, account)

    def _record_seeds(self, prev_hash: bytes) -> None:
        round_ = self.schedule.round_of(self.height)
        if self.height == self.schedule.start_height(round_) + 1:
            self._put(round_seed_key(round_), RoundSeed(prev_hash))
        elif self.height == self.schedule.challenge_height(round_) + 1:
            auditors = [k[len(AUDITOR_PREFIX):] for k in self._keys(AUDITOR_PREFIX, AUDITOR_KEY_LEN)]
            eligible = {m.pub_key for m in self.committee().members} | set(auditors)
            self._put(challenge_key(round_), ChallengeRecord(prev_hash, tuple(sorted(eligible))))

    # -- integer accounting used by block rewards and slashes

    def emit(self, to: bytes, amount: int) -> None:
        """Mint amount new coins into to's balance."""
        account, supply = self.account(to), self.supply()
        if account.balance + amount > U64_MAX or supply.emitted + amount > U64_MAX:
            raise TxError("overflow", f"emitting {amount} overflows")
        self._put_account(to, dataclasses.replace(account, balance=account.balance + amount))
        self._put(SUPPLY_KEY, dataclasses.replace(supply, emitted=supply.emitted + amount))

    def slash(self, offender: bytes, slash_bps: int, beneficiary: bytes, bounty_bps: int) -> tuple[int, int]:
        """Take slash_bps of offender's bond: bounty_bps of it to beneficiary, the rest burned.
        Returns (bounty, burned)."""
        account = self.account(offender)
        taken = account.bond * slash_bps // BPS
        bounty = taken * bounty_bps // BPS
        burned = taken - bounty
        self._put_account(offender, dataclasses.replace(account, bond=account.bond - taken))
        receiver = self.account(beneficiary)
        self._put_account(beneficiary, dataclasses.replace(receiver, balance=receiver.balance + bounty))
        supply = self.supply()
        self._put(SUPPLY_KEY, dataclasses.replace(supply, burned=supply.burned + burned))
        return bounty, burned

    # -- transactions

    def apply_tx(self, tx: SignedTx, encoded_size: int | None = None) -> None:
        """Apply one transaction, or raise TxError and change nothing.  WorkUnavailable
        (a fraud proof this node cannot decide yet) also changes nothing."""
        size = len(tx.encode()) if encoded_size is None else encoded_size
        if size > self.consensus.max_tx_bytes:
            raise TxError("oversize", f"{size} bytes exceeds the cap of {self.consensus.max_tx_bytes}")
        if not tx.signature_valid(self.chain_id):
            raise TxError("bad_signature", "the signature does not verify for this sender and chain")
        sender = tx.body.sender
        account = self.account(sender)
        if tx.body.nonce < account.nonce:
            raise TxError("nonce_replayed", f"nonce {tx.body.nonce} was already used (next is {account.nonce})")
        if tx.body.nonce > account.nonce:
            raise TxError("nonce_skipped", f"nonce {tx.body.nonce} skips ahead of {account.nonce}")
        self._undo = {}
        try:
            self._put_account(sender, dataclasses.replace(account, nonce=account.nonce + 1))
            _HANDLERS[type(tx.body.payload)](self, sender, tx.body.payload)
        except Exception:
            for key, old in self._undo.items():
                if old is _ABSENT:
                    del self._pending[key]
                else:
                    self._pending[key] = old
            raise
        finally:
            self._undo = {}

    def _transfer(self, sender: bytes, p: Transfer) -> None:
        _require_positive(p.amount)
        source = self.account(sender)
        if p.amount > source.balance:
            raise TxError("insufficient_balance", f"balance {source.balance} < amount {p.amount}")
        self._put_account(sender, dataclasses.replace(source, balance=source.balance - p.amount))
        target = self.account(p.to)
        if target.balance + p.amount > U64_MAX:
            raise TxError("overflow", "the recipient's balance would overflow")
        self._put_account(p.to, dataclasses.replace(target, balance=target.balance + p.amount))

    def _bond(self, sender: bytes, p: Bond) -> None:
        _require_positive(p.amount)
        account = self.account(sender)
        if p.amount > account.balance:
            raise TxError("insufficient_balance", f"balance {account.balance} < amount {p.amount}")
        if account.bond + p.amount > U64_MAX:
            raise TxError("overflow", "the bond would overflow")
        self._put_account(sender, dataclasses.replace(
            account, balance=account.balance - p.amount, bond=account.bond + p.amount))

    def _unbond(self, sender: bytes, p: Unbond) -> None:
        _require_positive(p.amount)
        account = self.account(sender)
        if p.amount > account.bond:
            raise TxError("insufficient_bond", f"bond {account.bond} < amount {p.amount}")
        if self.committee().power_of(sender):
            raise TxError("committee_member", "a committee member cannot unbond while seated")
        remaining = account.bond - p.amount
        if self.miner(sender) is not None and remaining < self.economics.min_miner_bond:
            raise TxError("below_miner_bond",
                          f"a miner must keep a bond of {self.economics.min_miner_bond}")
        if self._exists(auditor_key(sender)) and remaining < self.economics.min_auditor_bond:
            raise TxError("below_auditor_bond",
                          f"an auditor must keep a bond of {self.economics.min_auditor_bond}")
        self._put_account(sender, dataclasses.replace(
            account, balance=account.balance + p.amount, bond=remaining))

    def _register_miner(self, sender: bytes, p: RegisterMiner) -> None:
        if not 1 <= p.units <= MAX_MINER_UNITS:
            raise TxError("bad_units", f"units must be 1..{MAX_MINER_UNITS}, got {p.units}")
        if self.miner(sender) is not None:
            raise TxError("already_registered", "the sender is already a miner")
        bond = self.account(sender).bond
        if bond < self.economics.min_miner_bond:
            raise TxError("insufficient_bond",
                          f"bond {bond} is below the miner minimum {self.economics.min_miner_bond}")
        self._put(MINER_PREFIX + sender, Miner(units=p.units, since_height=self.height))

    def _register_auditor(self, sender: bytes, p: RegisterAuditor) -> None:
        if self._exists(auditor_key(sender)):
            raise TxError("already_registered", "the sender is already an auditor")
        bond = self.account(sender).bond
        if bond < self.economics.min_auditor_bond:
            raise TxError("insufficient_bond",
                          f"bond {bond} is below the auditor minimum {self.economics.min_auditor_bond}")
        self._put(auditor_key(sender), Auditor(since_height=self.height))

    def _work_commitment(self, sender: bytes, p: WorkCommitment) -> None:
        if p.round != self.schedule.round_of(self.height) or self.height > self.schedule.commit_deadline(p.round):
            raise TxError("outside_window", f"height {self.height} takes no commitments for round {p.round}")
        miner = self.miner(sender)
        if miner is None:
            raise TxError("unknown_miner", "the sender is not a registered miner")
        if p.unit >= miner.units:
            raise TxError("unit_out_of_range", f"unit {p.unit} but the miner has {miner.units} units")
        if p.start_root != self.model().root:
            raise TxError("wrong_start", "the unit does not start from the chain's current model")
        shard = assign_unit(self.round_start_hash(p.round), sender, p.unit).shard
        if p.shard != shard:
            raise TxError("wrong_shard", f"shard {p.shard}, but the unit is assigned shard {shard}")
        if p.checkpoint_count != self.segments + 1:
            raise TxError("bad_checkpoint_count",
                          f"{p.checkpoint_count} checkpoints, a unit has {self.segments + 1}")
        if len(p.loss_trace) != self.training.steps_per_unit:
            raise TxError("bad_loss_trace",
                          f"{len(p.loss_trace)} losses, a unit has {self.training.steps_per_unit} steps")
        if p.kernel_version != KERNEL_VERSION:
            raise TxError("wrong_kernel", f"kernel version {p.kernel_version}, the chain runs {KERNEL_VERSION}")
        if self.commitment(p.round, sender, p.unit) is not None:
            raise TxError("duplicate_commitment", f"unit {p.unit} of round {p.round} is already committed")
        self._put(commitment_key(p.round, sender, p.unit), p)

    def _audit_report(self, sender: bytes, p: AuditReport) -> None:
        self._require_audit_window(p.round)
        commitment = self._known_commitment(p.round, p.miner, p.unit)
        challenge = self.challenge(p.round)
        if p.segment not in challenged_segments(challenge.hash, p.miner, p.unit, self.segments,
                                                self.training.audit_segments):
            raise TxError("not_challenged", f"segment {p.segment} of this unit is not challenged")
        if sender not in assigned_auditors(challenge.hash, p.miner, p.unit, list(challenge.eligible),
                                           self.training.auditors_per_unit):
            raise TxError("not_assigned", "the sender is not assigned to audit this unit")
        if not verify_inclusion(commitment.checkpoint_root, p.result_hash, p.segment + 1,
                                commitment.checkpoint_count, p.result_proof):
            raise TxError("bad_proof", f"the result is not leaf {p.segment + 1} of the committed tree")
        key = audit_key(p.round, p.miner, p.unit, p.segment, sender)
        if self._exists(key):
            raise TxError("duplicate_audit", "this auditor already reported this segment")
        self._put(key, p)

    def _fraud_proof(self, sender: bytes, p: FraudProof) -> None:
        self._require_audit_window(p.round)
        commitment = self._known_commitment(p.round, p.miner, p.unit)
        key = fraud_key(p.round, p.miner, p.unit)
        if self._exists(key):
            raise TxError("already_proven", "this unit is already proven fraudulent")
        if p.segment > commitment.checkpoint_count - 1:
            raise TxError("segment_out_of_range",
                          f"segment {p.segment} of a unit with segments 0..{commitment.checkpoint_count - 1}")
        if not _claims_committed_states(commitment, p):
            raise TxError("bad_proof", "the claimed states are not the committed ones")
        if p.computed_end_hash == p.claimed_end_hash:
            raise TxError("not_fraud", "the computed hash equals the committed one")
        assignment = assign_unit(self.round_start_hash(p.round), p.miner, p.unit)
        # the commitment rule made the unit's start root the model of its round
        if not self.oracle.confirm_fraud(commitment.start_root, assignment, commitment, p):
            raise TxError("not_fraud", "re-executing the segment gives the committed state")
        self._put(key, FraudRecord(prover=sender, segment=p.segment))
        self.slash(p.miner, self.economics.fraud_slash_bps, sender, self.economics.fraud_bounty_bps)

    def _double_sign(self, sender: bytes, p: DoubleSignEvidence) -> None:
        a, b = p.first, p.second
        if a.validator != b.validator:
            raise TxError("not_equivocation", "the votes are from different validators")
        if (a.body.kind, a.body.height, a.body.round) != (b.body.kind, b.body.height, b.body.round):
            raise TxError("not_equivocation", "the votes are for different steps")
        if a.body.block_hash == b.body.block_hash:
            raise TxError("not_equivocation", "the votes are for the same block")
        if not (a.signature_valid(self.chain_id) and b.signature_valid(self.chain_id)):
            raise TxError("bad_proof", "a vote's signature does not verify")
        if not self.committee().power_of(a.validator):
            raise TxError("not_in_committee", "the validator is not in the committee")
        key = (EQUIVOCATION_PREFIX + a.validator + a.body.height.to_bytes(8, "big")
               + a.body.round.to_bytes(4, "big") + bytes([a.body.kind]))
        if self._exists(key):
            raise TxError("duplicate_evidence", "this equivocation was already punished")
        self._put(key, p)
        self.slash(a.validator, self.economics.fraud_slash_bps, sender, self.economics.fraud_bounty_bps)

    def _require_audit_window(self, round_: int) -> None:
        if self.height not in self.schedule.audit_window(round_):
            raise TxError("outside_window", f"height {self.height} is outside round {round_}'s audit window")

    def _known_commitment(self, round_: int, miner: bytes, unit: int) -> WorkCommitment:
        if self.miner(miner) is None:
            raise TxError("unknown_miner", "no such registered miner")
        commitment = self.commitment(round_, miner, unit)
        if commitment is None:
            raise TxError("unknown_commitment", f"no commitment for unit {unit} of round {round_}")
        return commitment

    # -- the round close (DESIGN.md §2, aggregate)

    def close_round(self, proposer: bytes) -> tuple[RoundClose, ...]:
        """At a round's closing height, decide the round from the state after the block's
        transactions and apply the decision; () at any other height.  WorkUnavailable if
        the new model cannot be computed here; BlockError if a payment overflows."""
        if not self.schedule.is_close(self.height):
            return ()
        round_ = self.schedule.round_of(self.height)
        units = self._round_units(round_)
        accepted = [u for u in units if u.outcome.status == ACCEPTED]
        root, loss_bits = self._next_model([u.commitment for u in accepted])
        payments = self._payments(accepted, proposer)
        epoch = round_ // self.consensus.epoch_rounds
        for unit in accepted:
            miner = unit.outcome.miner
            self._put(work_count_key(epoch, miner), WorkCount(self._work_count(epoch, miner) + 1))
        next_committee = self._next_committee(round_)
        if next_committee:
            self._seat(next_committee)
        try:
            for payment in payments:
                self.emit(payment.to, payment.amount)
        except TxError as exc:
            raise BlockError(f"round close: {exc}") from None
        self._put(MODEL_KEY, ModelRecord(round_ + 1, root, loss_bits))
        return (RoundClose(round=round_, units=tuple(u.outcome for u in units), model_root=root,
                           eval_loss_bits=loss_bits, payments=payments, next_committee=next_committee),)

    def _round_units(self, round_: int) -> list[_Unit]:
        """Every unit committed in round_, in (miner, unit) order, with its outcome."""
        reports: dict[tuple[bytes, int], list[tuple[int, bytes]]] = collections.defaultdict(list)
        for key in self._keys(AUDIT_PREFIX + _round_bytes(round_), AUDIT_KEY_LEN):
            miner, unit, segment, auditor = _split_audit_key(key)
            reports[(miner, unit)].append((segment, auditor))
        units = []
        for key in self._keys(COMMITMENT_PREFIX + _round_bytes(round_), COMMITMENT_KEY_LEN):
            miner, unit = _split_unit_key(key)
            unit_reports = reports.get((miner, unit), [])
            status = self._unit_status(round_, miner, unit, {segment for segment, _ in unit_reports})
            units.append(_Unit(UnitOutcome(miner, unit, status), self.commitment(round_, miner, unit),
                               tuple(auditor for _, auditor in unit_reports)))
        return units

    def _unit_status(self, round_: int, miner: bytes, unit: int, audited: set[int]) -> int:
        """SLASHED if proven fraudulent, ACCEPTED if every challenged segment was audited
        (only assigned auditors with valid proofs can report), REJECTED otherwise."""
        if self._exists(fraud_key(round_, miner, unit)):
            return SLASHED
        challenged = challenged_segments(self.challenge(round_).hash, miner, unit, self.segments,
                                         self.training.audit_segments)
        return ACCEPTED if audited.issuperset(challenged) else REJECTED

    def _next_model(self, accepted: list[WorkCommitment]) -> tuple[bytes, int]:
        """(root, eval loss bits) of the next round's model: the outer step over the
        accepted deltas, or the current model if none was accepted."""
        model = self.model()
        if not accepted:
            return model.root, model.eval_loss_bits
        return self.oracle.aggregate(model.root, [c.delta_hash for c in accepted])

    def _payments(self, accepted: list[_Unit], proposer: bytes) -> tuple[Payment, ...]:
        """The round's emission split into its pools: units and audit reports on accepted
        units share theirs equally (remainders are not emitted), the proposer takes its own.
        One payment per (to, reason), in that order, none of zero."""
        e = self.economics
        owed: dict[tuple[bytes, int], int] = collections.defaultdict(int)
        _share(owed, PAID_FOR_UNITS, e.emission_per_round * e.reward_units_bps // BPS,
               [u.outcome.miner for u in accepted])
        _share(owed, PAID_FOR_AUDITS, e.emission_per_round * e.reward_audits_bps // BPS,
               [auditor for u in accepted for auditor in u.auditors])
        owed[(proposer, PAID_AS_PROPOSER)] += e.emission_per_round * e.reward_proposer_bps // BPS
        return tuple(Payment(to, reason, amount) for (to, reason), amount in sorted(owed.items()) if amount)

    def _next_committee(self, round_: int) -> tuple[CommitteeMember, ...]:
        """The committee after round_ if it ends an epoch: members and bonded accounts that
        did verified work in the epoch, ranked by (work, bond) with ties to the smaller key;
        at most a third of the seats (at least one) change hands, an entrant taking a
        leaver's power.  () if round_ ends no epoch or nothing changes."""
        if (round_ + 1) % self.consensus.epoch_rounds:
            return ()
        epoch = round_ // self.consensus.epoch_rounds
        seated = self.committee().members
        seated_keys = {m.pub_key for m in seated}
        prefix = WORK_COUNT_PREFIX + epoch.to_bytes(8, "big")
        work = {k[len(prefix):]: self._record(k, WorkCount).units
                for k in self._keys(prefix, WORK_COUNT_KEY_LEN)}
        candidates = seated_keys | {k for k, units in work.items()
                                    if units > 0 and self.account(k).bond >= self.economics.min_miner_bond}
        ranked = sorted(candidates, key=lambda k: (-work.get(k, 0), -self.account(k).bond, k))
        desired = set(ranked[:self.consensus.committee_size])
        entering = [k for k in ranked if k in desired and k not in seated_keys]
        leaving = [k for k in reversed(ranked) if k in seated_keys and k not in desired]
        swaps = min(max(1, self.consensus.committee_size // 3), len(entering), len(leaving))
        if not swaps:
            return ()
        replaced = dict(zip(leaving[:swaps], entering[:swaps]))
        return tuple(CommitteeMember(replaced.get(m.pub_key, m.pub_key), m.power) for m in seated)

    def _seat(self, seats: tuple[CommitteeMember, ...]) -> None:
        old = self.committee()
        self._put(COMMITTEE_PREV_KEY, CommitteeChange(height=self.height, members=old.members))
        self._put(COMMITTEE_KEY, Committee(seats))


_ABSENT = object()


def _require_positive(amount: int) -> None:
    if amount <= 0:
        raise TxError("zero_amount", "the amount must be positive")


def _claims_committed_states(c: WorkCommitment, p: FraudProof) -> bool:
    """Whether the proof's start and claimed end are what the commitment holds: leaves
    segment and segment+1, or for the delta segment the last leaf and the delta hash."""
    if not verify_inclusion(c.checkpoint_root, p.start_hash, p.segment, c.checkpoint_count, p.start_proof):
        return False
    if p.segment == c.checkpoint_count - 1:
        return p.claimed_end_hash == c.delta_hash and not p.end_proof
    return verify_inclusion(c.checkpoint_root, p.claimed_end_hash, p.segment + 1, c.checkpoint_count,
                            p.end_proof)


def _share(owed: dict[tuple[bytes, int], int], reason: int, pool: int, payees: list[bytes]) -> None:
    """Split pool equally among payees, one share per listing."""
    for to in payees:
        owed[(to, reason)] += pool // len(payees)


_HANDLERS = {
    Transfer: Transition._transfer,
    Bond: Transition._bond,
    Unbond: Transition._unbond,
    RegisterMiner: Transition._register_miner,
    RegisterAuditor: Transition._register_auditor,
    WorkCommitment: Transition._work_commitment,
    AuditReport: Transition._audit_report,
    FraudProof: Transition._fraud_proof,
    DoubleSignEvidence: Transition._double_sign,
}

_CLOSE_PARTS = (("round", "round"), ("model_root", "model root"), ("eval_loss_bits", "eval loss"),
                ("payments", "payments"), ("units", "unit outcomes"), ("next_committee", "next committee"))


def execute_block(state: ChainState, genesis: Genesis, block: Block, oracle: WorkOracle) -> Transition:
    """Apply a block's transactions, then its round close, to an overlay.  BlockError if a
    transaction fails or the close differs from the one recomputed here; WorkUnavailable
    (not an error of the block) if this node lacks a blob needed to decide."""
    h = block.header
    transition = Transition(state, genesis, h.height, h.prev_hash, oracle)
    for index, tx in enumerate(block.txs):
        try:
            transition.apply_tx(tx)
        except TxError as exc:
            raise BlockError(f"transaction {index}: {exc}") from None
    _check_close(block.close, transition.close_round(h.proposer), h.height)
    return transition


def _check_close(carried: tuple[RoundClose, ...], expected: tuple[RoundClose, ...], height: int) -> None:
    if not expected:
        if carried:
            raise BlockError(f"round close: height {height} closes no round")
        return
    if not carried:
        raise BlockError(f"round close: missing at round {expected[0].round}'s closing height {height}")
    for field, label in _CLOSE_PARTS:
        got, want = getattr(carried[0], field), getattr(expected[0], field)
        if got != want:
            raise BlockError(f"round close: {label} {_difference(got, want)}")


def _difference(got: object, want: object) -> str:
    if isinstance(got, tuple):
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        if first is not None:
            return f"entry {first} differs from the recomputed one"
        return f"has {len(got)} entries, not the recomputed {len(want)}"
    if isinstance(got, bytes):
        return f"{got.hex()[:16]}… is not the recomputed {want.hex()[:16]}…"
    return f"{got} is not the recomputed {want}"
