"""The state's sparse Merkle tree (node.types.state_proof has its hashing rules), kept
in memory so that a block costs what it changes: a write rehashes the inner nodes on
its path, about log2(n) of them, instead of the whole state.

Nodes are immutable: a write copies the nodes on its path and shares the rest, so the
root a block would give is computed without touching the committed tree, and a tree
is a value that can be kept or dropped.
"""
from __future__ import annotations

import bisect
from typing import Iterable

from node.types.merkle import node_hash
from node.types.state_proof import EMPTY, PATH_BITS, StateProof, entry_hash, key_path, path_bit


class _Leaf:
    __slots__ = ("path", "key", "hash")

    def __init__(self, path: int, key: bytes, hash_: bytes):
        self.path, self.key, self.hash = path, key, hash_


class _Inner:
    __slots__ = ("left", "right", "hash")

    def __init__(self, left: _Node, right: _Node):
        self.left, self.right = left, right
        self.hash = node_hash(_hash_of(left), _hash_of(right))


_Node = _Leaf | _Inner | None


def _hash_of(node: _Node) -> bytes:
    return EMPTY if node is None else node.hash


class StateTree:
    """A sparse Merkle tree over state entries."""

    def __init__(self, top: _Node = None):
        self._top = top

    @classmethod
    def of(cls, entries: Iterable[tuple[bytes, bytes]]) -> StateTree:
        """The tree of these entries, built bottom-up: one hash per inner node."""
        leaves = sorted((_Leaf(key_path(k), k, entry_hash(k, v)) for k, v in entries), key=lambda leaf: leaf.path)
        return cls(_build(leaves, [leaf.path for leaf in leaves], 0, len(leaves), 0))

    @property
    def root(self) -> bytes:
        return _hash_of(self._top)

    def with_writes(self, writes: dict[bytes, bytes | None]) -> StateTree:
        """A new tree with writes applied (None deletes); this one is left as it was."""
        top = self._top
        for key, value in writes.items():
            path = key_path(key)
            if value is None:
                top = _delete(top, path, 0)
            else:
                top = _insert(top, _Leaf(path, key, entry_hash(key, value)), 0)
        return StateTree(top)

    def subtree_root(self, depth: int, prefix: int) -> bytes:
        """The hash of the subtree holding the paths that start with prefix (depth bits)."""
        node, at = self._top, 0
        while isinstance(node, _Inner) and at < depth:
            node = node.right if (prefix >> (depth - 1 - at)) & 1 else node.left
            at += 1
        if isinstance(node, _Leaf) and node.path >> (PATH_BITS - depth) != prefix:
            return EMPTY  # the one entry up here lies outside the prefix
        return _hash_of(node)

    def prove(self, key: bytes, value_of) -> StateProof:
        """The proof for key; value_of(key) gives the value of the entry the path ends at."""
        path, node, siblings = key_path(key), self._top, []
        while isinstance(node, _Inner):
            if path_bit(path, len(siblings)):
                siblings.append(_hash_of(node.left))
                node = node.right
            else:
                siblings.append(_hash_of(node.right))
                node = node.left
        leaf = None if node is None else (node.key, value_of(node.key))
        return StateProof(key, tuple(siblings), leaf)


def _build(leaves: list[_Leaf], paths: list[int], lo: int, hi: int, depth: int) -> _Node:
    """The subtree at depth over leaves[lo:hi], which share their first depth bits."""
    if lo == hi:
        return None
    if hi - lo == 1:
        return leaves[lo]
    # the first leaf whose path turns right here: the shared prefix, then a 1
    shift = PATH_BITS - depth
    right_from = ((paths[lo] >> shift) << shift) | (1 << (shift - 1))
    split = bisect.bisect_left(paths, right_from, lo, hi)
    return _Inner(_build(leaves, paths, lo, split, depth + 1), _build(leaves, paths, split, hi, depth + 1))


def _insert(node: _Node, leaf: _Leaf, depth: int) -> _Node:
    if node is None:
        return leaf
    if isinstance(node, _Leaf):
        if node.path == leaf.path:
            return leaf
        return _pair(node, leaf, depth)
    if path_bit(leaf.path, depth):
        return _Inner(node.left, _insert(node.right, leaf, depth + 1))
    return _Inner(_insert(node.left, leaf, depth + 1), node.right)


def _pair(a: _Leaf, b: _Leaf, depth: int) -> _Inner:
    """The subtree at depth holding two leaves: inner nodes down to where their paths part."""
    bit_a, bit_b = path_bit(a.path, depth), path_bit(b.path, depth)
    if bit_a != bit_b:
        return _Inner(b, a) if bit_a else _Inner(a, b)
    below = _pair(a, b, depth + 1)
    return _Inner(None, below) if bit_a else _Inner(below, None)


def _delete(node: _Node, path: int, depth: int) -> _Node:
    if node is None:
        return None
    if isinstance(node, _Leaf):
        return None if node.path == path else node
    if path_bit(path, depth):
        left, right = node.left, _delete(node.right, path, depth + 1)
    else:
        left, right = _delete(node.left, path, depth + 1), node.right
    if left is node.left and right is node.right:
        return node
    # a subtree left with one entry collapses to it, so the shape depends only on the entries
    if left is None and not isinstance(right, _Inner):
        return right
    if right is None and not isinstance(left, _Inner):
        return left
    return _Inner(left, right)
