"""The committed chain state: its entries and the root over them.

The root is the Merkle root over (key, value) pairs in key order, so every node
computes the same root from the same entries.  Each entry's leaf hash is kept, so
a block rehashes only the entries it changes.  The keys are also kept in order, so
reading one kind of entry (a round's commitments, say) costs what it returns, not the
size of the state.
"""
from __future__ import annotations

import bisect

from node.state.reader import R, StateReader
from node.state.records import (COMMITTEE_KEY, MODEL_KEY, SUPPLY_KEY, UNMEASURED_LOSS, AccountRecord,
                                Committee, ModelRecord, Supply, account_key)
from node.types.blocks import CommitteeMember
from node.types.genesis import Genesis
from node.types.merkle import leaf_hash, root_of_leaf_hashes


def _entry_hash(key: bytes, value: bytes) -> bytes:
    return leaf_hash(len(key).to_bytes(2, "big") + key + value)


class ChainState(StateReader):
    """The committed state: encoded entries by key, and the root over them."""

    def __init__(self, entries: dict[bytes, bytes]):
        self.entries = dict(entries)
        self._hashes = {k: _entry_hash(k, v) for k, v in self.entries.items()}
        self._sorted_keys = sorted(self.entries)

    @classmethod
    def from_genesis(cls, genesis: Genesis, model_root: bytes) -> ChainState:
        """The state at height 0: genesis accounts and committee, and the genesis model,
        whose root the useful-work layer computes (model_root)."""
        entries: dict[bytes, bytes] = {}
        total = 0
        for account in genesis.accounts:
            entries[account_key(account.address)] = AccountRecord(
                balance=account.balance, bond=account.bond).encode()
            total += account.balance + account.bond
        members = tuple(CommitteeMember(v.pub_key, v.power) for v in genesis.validators)
        entries[COMMITTEE_KEY] = Committee(members).encode()
        entries[SUPPLY_KEY] = Supply(genesis=total, emitted=0, burned=0).encode()
        entries[MODEL_KEY] = ModelRecord(0, model_root, UNMEASURED_LOSS).encode()
        return cls(entries)

    def record(self, key: bytes, cls: type[R]) -> R | None:
        raw = self.entries.get(key)
        return cls.decode(raw) if raw is not None else None

    def keys(self, prefix: bytes, length: int) -> list[bytes]:
        found = []
        for index in range(bisect.bisect_left(self._sorted_keys, prefix), len(self._sorted_keys)):
            key = self._sorted_keys[index]
            if not key.startswith(prefix):
                break
            if len(key) == length:
                found.append(key)
        return found

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
                if self.entries.pop(key, None) is not None:
                    del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
                self._hashes.pop(key, None)
            else:
                if key not in self.entries:
                    bisect.insort(self._sorted_keys, key)
                self.entries[key] = value
                self._hashes[key] = _entry_hash(key, value)
