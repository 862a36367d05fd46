"""The state root's hashing rules, and proofs that an entry is (or is not) in a state.

The state is a sparse Merkle tree over 256-bit paths, an entry's path being SHA-256
of its key.  It is compact: an empty subtree hashes to 32 zero bytes, a subtree
holding one entry hashes to that entry's leaf hash wherever it sits, and a subtree
holding two or more is an inner node, H(0x01 || left || right).  So the tree of a set
of entries is one shape whatever order they were written in, every node computes the
same root, and a write rehashes only the inner nodes on its path: about log2(n).

A proof of a key is the siblings along its path from the root down to where the tree
stops, and what it stops at: the key's own entry (it is there, with this value), or
nothing or another entry whose path shares the prefix (it is not there).  The leaf
and inner prefixes (0x00, 0x01) keep an entry from passing for an inner node, and the
verifier derives the path from the key, so a proof cannot move an entry elsewhere.
"""
from __future__ import annotations

import dataclasses
import hashlib
from node.types.merkle import leaf_hash, node_hash

EMPTY = bytes(32)  # the hash of a subtree without entries
PATH_BITS = 256


def entry_hash(key: bytes, value: bytes) -> bytes:
    """An entry's leaf hash: the key's length first, so key and value cannot trade bytes."""
    return leaf_hash(len(key).to_bytes(2, "big") + key + value)


def key_path(key: bytes) -> int:
    """Where key sits in the tree: SHA-256 of it, as a 256-bit number read from the top bit."""
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


def path_bit(path: int, depth: int) -> int:
    """Which side (0 left, 1 right) path takes below an inner node at depth."""
    return (path >> (PATH_BITS - 1 - depth)) & 1


@dataclasses.dataclass(frozen=True)
class StateProof:
    """The siblings from the root down along key's path, and where the path ends: the
    entry found there (its key and value), or None for an empty subtree."""
    key: bytes
    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None

    def to_json(self) -> dict:
        return {"key": self.key.hex(), "siblings": [s.hex() for s in self.siblings],
                "leaf": None if self.leaf is None else {"key": self.leaf[0].hex(), "value": self.leaf[1].hex()}}

    @staticmethod
    def from_json(obj: dict) -> StateProof:
        """ValueError naming the field if obj is not a proof's JSON."""
        try:
            leaf = obj["leaf"]
            return StateProof(bytes.fromhex(obj["key"]), tuple(_hash(s) for s in obj["siblings"]),
                              None if leaf is None else (bytes.fromhex(leaf["key"]), bytes.fromhex(leaf["value"])))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"a state proof needs key, siblings and leaf: {exc!r}") from None


def _hash(text: str) -> bytes:
    value = bytes.fromhex(text)
    if len(value) != 32:
        raise ValueError(f"a sibling hash has {len(value)} bytes, not 32")
    return value


def proven_value(root: bytes, proof: StateProof) -> tuple[bool, bytes | None]:
    """(whether proof holds against root, the key's value it proves: None if absent)."""
    if len(proof.siblings) > PATH_BITS:
        return False, None
    path = key_path(proof.key)
    if proof.leaf is None:
        node, value = EMPTY, None
    else:
        leaf_key, leaf_value = proof.leaf
        depth = len(proof.siblings)
        other = key_path(leaf_key)
        if leaf_key != proof.key and other >> (PATH_BITS - depth) != path >> (PATH_BITS - depth):
            return False, None  # an entry elsewhere in the tree proves nothing about this path
        node, value = entry_hash(leaf_key, leaf_value), (leaf_value if leaf_key == proof.key else None)
    for depth in range(len(proof.siblings) - 1, -1, -1):
        sibling = proof.siblings[depth]
        node = node_hash(sibling, node) if path_bit(path, depth) else node_hash(node, sibling)
    return node == root, value


def verify_state_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    """True if proof shows that, in the state with this root, key holds value (None: key
    holds nothing)."""
    holds, proven = proven_value(root, proof)
    return holds and proof.key == key and proven == value
