"""A block's pending changes over the committed state, and the errors of applying them.

Changes happen on a Transition, an overlay over the state for one block: a
transaction that fails leaves the overlay as it was (all_or_nothing), and a block
either commits all of its overlay's writes or none.  A block's hash is not known
while it executes, so a round's seeds come from the previous block, recorded by the
block after it: the round start hash by a round's first block; the challenge's
choosers and their seeds (records.ChallengeRecord: the beacon of each chooser's own
precommit, which its block carries) by the blocks after the challenge block
(DESIGN.md §2).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

from node.state.chain_state import ChainState
from node.state.reader import R, StateReader
from node.state.records import (COMMITTEE_HISTORY_KEY, COMMITTEE_KEY, SUPPLY_KEY, U64_MAX, AccountRecord,
                                ChallengeRecord, Committee, CommitteeChange, CommitteeHistory, RoundSeed, account_key,
                                challenge_key, round_seed_key)
from node.types.blocks import CommitCertificate
from node.types.codec import Record
from node.types.genesis import BPS, Genesis
from node.uPoW.oracle import WorkOracle
from node.uPoW.rounds import RoundSchedule


class BlockError(Exception):
    """A block whose transactions or round close cannot be applied; the message says why."""


class TxError(Exception):
    """A transaction that cannot be applied; reason is a stable code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


_ABSENT = object()  # an undo entry for a key the block had not written before


class Transition(StateReader):
    """Pending changes over a ChainState for one block at height by proposer, whose
    parent has hash prev_hash and whose carried commit (of the parent) is last_commit.  The oracle
    answers what needs training compute: fraud proofs and round closes."""

    def __init__(self, state: ChainState, genesis: Genesis, height: int, prev_hash: bytes,
                 last_commit: CommitCertificate, proposer: bytes, oracle: WorkOracle):
        self.state = state
        self.chain_id = genesis.chain_id
        self.economics = genesis.economics
        self.training = genesis.training
        self.consensus = genesis.consensus
        self.schedule = RoundSchedule.from_genesis(genesis)
        self.height = height
        self.proposer = proposer
        self.oracle = oracle
        # records written by this block, encoded only when the block is stored
        self._pending: dict[bytes, Record | None] = {}
        # committed entries decoded so far, so a block decodes each one it touches once
        self._decoded: dict[bytes, Record] = {}
        # previous values of the keys the current transaction wrote, to roll it back
        self._undo: dict[bytes, Record | None | object] = {}
        self._record_seeds(prev_hash, last_commit)

    @property
    def writes(self) -> dict[bytes, bytes | None]:
        """This block's changes as encoded state entries (None deletes)."""
        return {k: None if r is None else r.encode() for k, r in self._pending.items()}

    # -- reads through the overlay

    def record(self, key: bytes, cls: type[R]) -> R | None:
        if key in self._pending:
            return self._pending[key]
        record = self._decoded.get(key)
        if record is None:
            record = self.state.record(key, cls)
            if record is None:
                return None
            self._decoded[key] = record
        return record

    def keys(self, prefix: bytes, length: int) -> list[bytes]:
        keys = set(self.state.keys(prefix, length))
        for key, record in self._pending.items():
            if len(key) == length and key.startswith(prefix):
                if record is None:
                    keys.discard(key)
                else:
                    keys.add(key)
        return sorted(keys)

    # -- writes

    def put(self, key: bytes, record: Record) -> None:
        self._write(key, record)

    def delete(self, key: bytes) -> None:
        self._write(key, None)

    def _write(self, key: bytes, record: Record | None) -> None:
        if key not in self._undo:
            self._undo[key] = self._pending.get(key, _ABSENT)
        self._pending[key] = record

    def put_account(self, address: bytes, account: AccountRecord) -> None:
        self.put(account_key(address), account)

    def change_committee(self, committee: Committee) -> None:
        """Seat committee from the next block on.  The block's first change records the
        committee that decided it, and drops the changes older than the evidence window:
        no evidence or unbonding asks about their heights any more."""
        changes = self.committee_changes()
        if not changes or changes[-1].height != self.height:
            oldest = self.height - self.consensus.evidence_window_blocks
            kept = tuple(c for c in changes if c.height >= oldest)
            change = CommitteeChange(self.height, self.committee().members)
            self.put(COMMITTEE_HISTORY_KEY, CommitteeHistory(kept + (change,)))
        self.put(COMMITTEE_KEY, committee)

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Undo every write made inside the block if it raises (one transaction)."""
        self._undo = {}
        try:
            yield
        except Exception:
            for key, old in self._undo.items():
                if old is _ABSENT:
                    del self._pending[key]
                else:
                    self._pending[key] = old
            raise
        finally:
            self._undo = {}

    def _record_seeds(self, prev_hash: bytes, last_commit: CommitCertificate) -> None:
        round_ = self.schedule.round_of(self.height)
        if self.height == self.schedule.start_height(round_) + 1:
            self.put(round_seed_key(round_), RoundSeed(prev_hash))
        elif self.height > self.schedule.challenge_height(round_):
            first = self.height == self.schedule.challenge_height(round_) + 1
            committee = self.committee()
            record = (ChallengeRecord.snapshot({m.pub_key for m in committee.members} | set(self.auditors()),
                                               committee)
                      if first else self.challenge(round_))
            if record is None:
                return
            drawn = record.after_block(self.chain_id, last_commit, self.proposer, committee)
            if first or drawn is not record:
                self.put(challenge_key(round_), drawn)

    # -- integer accounting used by block rewards and slashes

    def emit(self, to: bytes, amount: int) -> None:
        """Mint amount new coins into to's balance."""
        account, supply = self.account(to), self.supply()
        if account.balance + amount > U64_MAX or supply.emitted + amount > U64_MAX:
            raise TxError("overflow", f"emitting {amount} overflows")
        self.put_account(to, dataclasses.replace(account, balance=account.balance + amount))
        self.put(SUPPLY_KEY, dataclasses.replace(supply, emitted=supply.emitted + amount))

    def slash(self, offender: bytes, slash_bps: int, beneficiary: bytes, bounty_bps: int) -> tuple[int, int]:
        """Take slash_bps of offender's bond: bounty_bps of it to beneficiary, the rest burned.
        Returns (bounty, burned)."""
        account = self.account(offender)
        taken = account.bond * slash_bps // BPS
        bounty = taken * bounty_bps // BPS
        burned = taken - bounty
        self.put_account(offender, dataclasses.replace(account, bond=account.bond - taken))
        receiver = self.account(beneficiary)
        self.put_account(beneficiary, dataclasses.replace(receiver, balance=receiver.balance + bounty))
        supply = self.supply()
        self.put(SUPPLY_KEY, dataclasses.replace(supply, burned=supply.burned + burned))
        return bounty, burned

    def burn_bond(self, offender: bytes, slash_bps: int) -> int:
        """Burn slash_bps of offender's bond, paying no one; returns the amount burned."""
        account = self.account(offender)
        taken = account.bond * slash_bps // BPS
        self.put_account(offender, dataclasses.replace(account, bond=account.bond - taken))
        supply = self.supply()
        self.put(SUPPLY_KEY, dataclasses.replace(supply, burned=supply.burned + taken))
        return taken
