"""The chain state and its transition function.

The state is a map from keys to canonical encodings: accounts, miners, the
committee, the supply counters, work commitments and audits, each kind under its
own key prefix.  Its root is the Merkle root over (key, value) pairs in key order,
so every node computes the same root from the same entries.

Changes happen on a Transition, an overlay over the state: a transaction that
fails leaves the overlay as it was, and a block either commits all of its
overlay's writes or none.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from node.codec import PUBKEY, U16, U64, ListOf, Nested, Record
from node.genesis import Genesis
from node.merkle import leaf_hash, root_of_leaf_hashes, verify_inclusion
from node.transactions import (AuditReport, Bond, DoubleSignEvidence, FraudProof, RegisterMiner,
                               SignedTx, Transfer, Unbond, WorkCommitment)

U64_MAX = (1 << 64) - 1
BPS = 10_000
MAX_MINER_UNITS = 64

ACCOUNT_PREFIX = b"a"
MINER_PREFIX = b"m"
COMMITMENT_PREFIX = b"w"
AUDIT_PREFIX = b"u"
EQUIVOCATION_PREFIX = b"e"
COMMITTEE_KEY = b"committee"
SUPPLY_KEY = b"supply"


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
class CommitteeMember(Record):
    pub_key: bytes
    power: int
    SCHEMA = (("pub_key", PUBKEY), ("power", U64))


@dataclasses.dataclass(frozen=True)
class Committee(Record):
    members: tuple[CommitteeMember, ...]
    SCHEMA = (("members", ListOf(Nested(CommitteeMember), 1000)),)

    def power_of(self, pub_key: bytes) -> int:
        return next((m.power for m in self.members if m.pub_key == pub_key), 0)

    @property
    def total_power(self) -> int:
        return sum(m.power for m in self.members)


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


class BlockError(Exception):
    """A block whose transactions cannot all be applied."""


class TxError(Exception):
    """A transaction that cannot be applied; reason is a stable code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def commitment_key(round_: int, miner: bytes, unit: int) -> bytes:
    return COMMITMENT_PREFIX + round_.to_bytes(8, "big") + miner + unit.to_bytes(4, "big")


def audit_key(round_: int, miner: bytes, unit: int, segment: int, auditor: bytes) -> bytes:
    return (AUDIT_PREFIX + round_.to_bytes(8, "big") + miner + unit.to_bytes(4, "big")
            + segment.to_bytes(4, "big") + auditor)


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

    def account(self, address: bytes) -> Account:
        raw = self.entries.get(ACCOUNT_PREFIX + address)
        return Account.decode(raw) if raw is not None else Account()

    def committee(self) -> Committee:
        return Committee.decode(self.entries[COMMITTEE_KEY])

    def supply(self) -> Supply:
        return Supply.decode(self.entries[SUPPLY_KEY])

    def total_holdings(self) -> int:
        """Sum of every balance and bond (the left side of the supply invariant)."""
        return sum(a.balance + a.bond for a in
                   (Account.decode(v) for k, v in self.entries.items() if k[:1] == ACCOUNT_PREFIX))


class Transition:
    """Pending changes over a ChainState for one block."""

    def __init__(self, state: ChainState, chain_id: str, genesis: Genesis, height: int):
        self.state = state
        self.chain_id = chain_id
        self.economics = genesis.economics
        self.max_tx_bytes = genesis.consensus.max_tx_bytes
        self.height = height
        # records written by this block, encoded only when the block is stored
        self._pending: dict[bytes, Record | None] = {}
        # committed entries decoded so far, so a block decodes each one it touches once
        self._decoded: dict[bytes, Record] = {}
        # previous values of the keys the current transaction wrote, to roll it back
        self._undo: dict[bytes, Record | None | object] = {}

    @property
    def writes(self) -> dict[bytes, bytes | None]:
        """This block's changes as encoded state entries (None deletes)."""
        return {k: None if r is None else r.encode() for k, r in self._pending.items()}

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

    def account(self, address: bytes) -> Account:
        return self._record(ACCOUNT_PREFIX + address, Account) or Account()

    def miner(self, address: bytes) -> Miner | None:
        return self._record(MINER_PREFIX + address, Miner)

    def committee(self) -> Committee:
        return self._record(COMMITTEE_KEY, Committee)

    def supply(self) -> Supply:
        return self._record(SUPPLY_KEY, Supply)

    def commitment(self, round_: int, miner: bytes, unit: int) -> WorkCommitment | None:
        return self._record(commitment_key(round_, miner, unit), WorkCommitment)

    def _exists(self, key: bytes) -> bool:
        if key in self._pending:
            return self._pending[key] is not None
        return key in self.state.entries

    # -- writes

    def _put(self, key: bytes, record: Record) -> None:
        if key not in self._undo:
            self._undo[key] = self._pending.get(key, _ABSENT)
        self._pending[key] = record

    def _put_account(self, address: bytes, account: Account) -> None:
        self._put(ACCOUNT_PREFIX + address, account)

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
        """Apply one transaction, or raise TxError and change nothing."""
        size = len(tx.encode()) if encoded_size is None else encoded_size
        if size > self.max_tx_bytes:
            raise TxError("oversize", f"{size} bytes exceeds the cap of {self.max_tx_bytes}")
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
        except TxError:
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

    def _work_commitment(self, sender: bytes, p: WorkCommitment) -> None:
        miner = self.miner(sender)
        if miner is None:
            raise TxError("unknown_miner", "the sender is not a registered miner")
        if p.unit >= miner.units:
            raise TxError("unit_out_of_range", f"unit {p.unit} but the miner has {miner.units} units")
        if p.checkpoint_count == 0:
            raise TxError("no_checkpoints", "a commitment needs at least one checkpoint")
        if self.commitment(p.round, sender, p.unit) is not None:
            raise TxError("duplicate_commitment", f"unit {p.unit} of round {p.round} is already committed")
        self._put(commitment_key(p.round, sender, p.unit), p)

    def _audit_report(self, sender: bytes, p: AuditReport) -> None:
        commitment = self._known_commitment(p.round, p.miner, p.unit)
        if p.segment >= commitment.checkpoint_count:
            raise TxError("segment_out_of_range",
                          f"segment {p.segment} of {commitment.checkpoint_count}")
        key = audit_key(p.round, p.miner, p.unit, p.segment, sender)
        if self._exists(key):
            raise TxError("duplicate_audit", "this auditor already reported this segment")
        self._put(key, p)

    def _fraud_proof(self, sender: bytes, p: FraudProof) -> None:
        commitment = self._known_commitment(p.round, p.miner, p.unit)
        count = commitment.checkpoint_count
        # leaf 0 is the unit's start state, leaf s+1 the state after segment s
        if p.segment >= count - 1:
            raise TxError("segment_out_of_range", f"segment {p.segment} of {count - 1}")
        root = commitment.checkpoint_root
        if not (verify_inclusion(root, p.start_hash, p.segment, count, p.start_proof)
                and verify_inclusion(root, p.claimed_end_hash, p.segment + 1, count, p.end_proof)):
            raise TxError("bad_proof", "the checkpoints are not in the committed Merkle tree")
        if p.computed_end_hash == p.claimed_end_hash:
            raise TxError("not_fraud", "the computed hash equals the committed one")
        key = audit_key(p.round, p.miner, p.unit, p.segment, sender)
        if self._exists(key):
            raise TxError("duplicate_audit", "this auditor already reported this segment")
        self._put(key, p)

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

    def _known_commitment(self, round_: int, miner: bytes, unit: int) -> WorkCommitment:
        if self.miner(miner) is None:
            raise TxError("unknown_miner", "no such registered miner")
        commitment = self.commitment(round_, miner, unit)
        if commitment is None:
            raise TxError("unknown_commitment", f"no commitment for unit {unit} of round {round_}")
        return commitment


_ABSENT = object()


def _require_positive(amount: int) -> None:
    if amount <= 0:
        raise TxError("zero_amount", "the amount must be positive")


_HANDLERS = {
    Transfer: Transition._transfer,
    Bond: Transition._bond,
    Unbond: Transition._unbond,
    RegisterMiner: Transition._register_miner,
    WorkCommitment: Transition._work_commitment,
    AuditReport: Transition._audit_report,
    FraudProof: Transition._fraud_proof,
    DoubleSignEvidence: Transition._double_sign,
}


def execute_block(state: ChainState, genesis: Genesis, height: int, txs: Iterable[SignedTx]) -> Transition:
    """Apply every transaction of a block to an overlay; BlockError if any fails."""
    transition = Transition(state, genesis.chain_id, genesis, height)
    for index, tx in enumerate(txs):
        try:
            transition.apply_tx(tx)
        except TxError as exc:
            raise BlockError(f"transaction {index}: {exc}") from None
    return transition
