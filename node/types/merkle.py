"""SHA-256 Merkle trees with inclusion proofs (RFC 6962's shape).

Leaves and inner nodes are hashed under different prefixes (0x00 and 0x01), so a
leaf can never be passed off as an inner node.  A tree of n leaves splits at the
largest power of two below n; the empty tree's root is SHA-256 of nothing.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    # Pairing level by level, carrying an odd last node up unhashed, gives the same
    # root as RFC 6962's split at the largest power of two below n.
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root over the leaves' data, in order."""
    return root_of_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def root_of_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The root over already computed leaf hashes, in order."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    return _root_of_hashes(hashes)


def _path(hashes: Sequence[bytes], index: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return _path(hashes[:k], index) + [_root_of_hashes(hashes[k:])]
    return _path(hashes[k:], index - k) + [_root_of_hashes(hashes[:k])]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The sibling hashes from leaf index up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of a tree of {len(leaves)}")
    return _path([leaf_hash(leaf) for leaf in leaves], index)


def verify_inclusion(root: bytes, leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bool:
    """True if leaf is at index of a size-leaf tree with this root (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(sibling, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
