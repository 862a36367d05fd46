"""The committed chain state: its entries and the root over them.

The root is the root of a sparse Merkle tree over the entries (node.state.state_tree),
so every node computes the same root from the same entries, a block rehashes only
the paths of the entries it changes, and any entry can be proven to a light client.
The keys are also kept in order, so reading one kind of entry (a round's
commitments, say) costs what it returns, not the size of the state.
"""
from __future__ import annotations

from sortedcontainers import SortedList

from node.state.reader import R, StateReader
from node.state.state_tree import StateTree
from node.state.records import (COMMITTEE_KEY, MODEL_KEY, SUPPLY_KEY, UNMEASURED_LOSS, AccountRecord,
                                Committee, ModelRecord, Supply, account_key)
from node.types.blocks import CommitteeMember
from node.types.genesis import Genesis
from node.types.state_proof import StateProof


class ChainState(StateReader):
    """The committed state: encoded entries by key, and the root over them."""

    def __init__(self, entries: dict[bytes, bytes]):
        self.entries = dict(entries)
        self._tree = StateTree.of(self.entries.items())
        self._sorted_keys = SortedList(self.entries)
        # the tree root_after last computed, and from what: a block's writes are checked
        # before they are applied, so applying them need not hash their paths again
        self._after: tuple[StateTree, dict, StateTree] | None = None

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
        for key in self._sorted_keys.irange(minimum=prefix):
            if not key.startswith(prefix):
                break
            if len(key) == length:
                found.append(key)
        return found

    @property
    def tree(self) -> StateTree:
        """The committed entries' tree: immutable, so it stays as it is while blocks go on."""
        return self._tree

    def root(self) -> bytes:
        return self._tree.root

    def root_after(self, writes: dict[bytes, bytes | None]) -> bytes:
        """The root this state would have with writes applied (None deletes)."""
        return self._tree_after(writes).root

    def _tree_after(self, writes: dict[bytes, bytes | None]) -> StateTree:
        if self._after is not None and self._after[0] is self._tree and self._after[1] == writes:
            return self._after[2]
        tree = self._tree.with_writes(writes)
        self._after = (self._tree, dict(writes), tree)
        return tree

    def prove(self, key: bytes) -> StateProof:
        """A proof of key's entry (or of its absence) against root()."""
        return self._tree.prove(key, self.entries.__getitem__)

    def apply_writes(self, writes: dict[bytes, bytes | None]) -> None:
        self._tree = self._tree_after(writes)
        for key, value in writes.items():
            if value is None:
                if self.entries.pop(key, None) is not None:
                    self._sorted_keys.remove(key)
            else:
                if key not in self.entries:
                    self._sorted_keys.add(key)
                self.entries[key] = value
