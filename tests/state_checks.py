"""Invariants of the chain state that tests check, recomputed here from the entries."""
from typing import Iterable

from node.state.chain_state import ChainState
from node.state.records import ACCOUNT_PREFIX, AccountRecord, Supply
from node.types.merkle import leaf_hash, node_hash
from node.types.crypto import sha256


def total_holdings(state: ChainState) -> int:
    """Sum of every balance and bond (the left side of the supply invariant)."""
    return sum(a.balance + a.bond for a in
               (AccountRecord.decode(v) for k, v in state.entries.items() if k[:1] == ACCOUNT_PREFIX))


def expected_total(supply: Supply) -> int:
    """What the holdings must sum to: genesis + emitted - burned."""
    return supply.genesis + supply.emitted - supply.burned


def state_digest(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The state root over (key, value) entries, from scratch: the compact sparse Merkle
    tree over SHA-256 of each key (zeros for an empty subtree, an entry's leaf hash for
    a subtree holding only it), split by one path bit at a time."""
    leaves = sorted((format(int.from_bytes(sha256(k), "big"), "0256b"), leaf_hash(len(k).to_bytes(2, "big") + k + v))
                    for k, v in entries)
    return _subtree(leaves, 0)


def _subtree(leaves: list[tuple[str, bytes]], depth: int) -> bytes:
    if not leaves:
        return bytes(32)
    if len(leaves) == 1:
        return leaves[0][1]
    left = [leaf for leaf in leaves if leaf[0][depth] == "0"]
    right = [leaf for leaf in leaves if leaf[0][depth] == "1"]
    return node_hash(_subtree(left, depth + 1), _subtree(right, depth + 1))
