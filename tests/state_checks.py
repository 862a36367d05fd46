"""Invariants of the chain state that tests check, recomputed here from the entries."""
from typing import Iterable

from node.state.chain_state import ChainState
from node.state.records import ACCOUNT_PREFIX, AccountRecord, Supply
from node.types.merkle import leaf_hash, root_of_leaf_hashes


def total_holdings(state: ChainState) -> int:
    """Sum of every balance and bond (the left side of the supply invariant)."""
    return sum(a.balance + a.bond for a in
               (AccountRecord.decode(v) for k, v in state.entries.items() if k[:1] == ACCOUNT_PREFIX))


def expected_total(supply: Supply) -> int:
    """What the holdings must sum to: genesis + emitted - burned."""
    return supply.genesis + supply.emitted - supply.burned


def state_digest(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The state root over (key, value) entries, from scratch: the Merkle root over
    length-prefixed key and value, in key order."""
    return root_of_leaf_hashes([leaf_hash(len(k).to_bytes(2, "big") + k + v) for k, v in sorted(entries)])
