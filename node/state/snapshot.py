"""State snapshots: the state at a height as content-addressed chunks, for state sync.

A snapshot cuts the state's sparse Merkle tree at one depth: chunk i holds the entries
whose path starts with i (as depth bits), and the manifest lists each chunk's digest,
subtree root and entry count.  The subtree roots combine into the state root the
header at that height commits to, so a node that verified the header checks the
manifest in one step, and then each chunk against its own subtree root as it
arrives: a tampered entry is caught in its chunk, and named.  The depth is chosen so
that a chunk holds about CHUNK_TARGET_BYTES.  No I/O here.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from node.state.state_tree import StateTree
from node.types.codec import HASH, ListOf, Nested, Record, UInt, VarBytes
from node.types.crypto import sha256
from node.types.merkle import node_hash
from node.types.state_proof import EMPTY, PATH_BITS, key_path

CHUNK_TARGET_BYTES = 1 << 20
MAX_DEPTH = 16  # 65,536 chunks: a state of 64 GiB at the target size
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1 << 20
MAX_CHUNK_ENTRIES = 1 << 20
_ENTRY_OVERHEAD = 8  # the two length prefixes


class SnapshotError(Exception):
    """A snapshot, or one of its chunks, that does not match what it must; one line."""


@dataclasses.dataclass(frozen=True)
class Subtree(Record):
    """One chunk's place in the manifest: its blob's digest (zeros when it holds no
    entries and so has no blob), the root of its subtree and how many entries it holds."""
    digest: bytes
    root: bytes
    entries: int
    SCHEMA = (("digest", HASH), ("root", HASH), ("entries", UInt(32)))


@dataclasses.dataclass(frozen=True)
class SnapshotManifest(Record):
    height: int
    block_hash: bytes
    state_root: bytes
    depth: int
    subtrees: tuple[Subtree, ...]
    SCHEMA = (("height", UInt(64)), ("block_hash", HASH), ("state_root", HASH), ("depth", UInt(8)),
              ("subtrees", ListOf(Nested(Subtree), 1 << MAX_DEPTH)))

    def check_shape(self) -> None:
        """SnapshotError unless the manifest has one subtree per path prefix of its depth
        and they combine into its state root."""
        if self.depth > MAX_DEPTH or len(self.subtrees) != 1 << self.depth:
            raise SnapshotError(f"the manifest lists {len(self.subtrees)} chunks for depth {self.depth}")
        if combined_root(self.subtrees) != self.state_root:
            raise SnapshotError("the manifest's chunk roots do not combine into its state root")

    @property
    def digests(self) -> list[bytes]:
        """The chunk blobs to fetch, in order."""
        return [s.digest for s in self.subtrees if s.entries]


@dataclasses.dataclass(frozen=True)
class Entry(Record):
    key: bytes
    value: bytes
    SCHEMA = (("key", VarBytes(MAX_KEY_BYTES)), ("value", VarBytes(MAX_VALUE_BYTES)))


@dataclasses.dataclass(frozen=True)
class Chunk(Record):
    entries: tuple[Entry, ...]
    SCHEMA = (("entries", ListOf(Nested(Entry), MAX_CHUNK_ENTRIES)),)


def combined_root(subtrees: Iterable[Subtree]) -> bytes:
    """The root of the tree whose subtrees at one depth these are, by the compact tree's
    rule: a subtree holding one entry is that entry's hash wherever it sits."""
    level = [(s.root, s.entries) for s in subtrees]
    while len(level) > 1:
        paired = []
        for (left, n_left), (right, n_right) in zip(level[::2], level[1::2]):
            if n_left + n_right <= 1:
                paired.append((left if n_left else right, n_left + n_right))
            else:
                paired.append((node_hash(left, right), n_left + n_right))
        level = paired
    return level[0][0] if level else EMPTY


def _depth_for(total_bytes: int) -> int:
    chunks = max(1, total_bytes // CHUNK_TARGET_BYTES)
    return min(MAX_DEPTH, math.ceil(math.log2(chunks)))


def make_snapshot(entries: dict[bytes, bytes], tree: StateTree, height: int,
                  block_hash: bytes) -> tuple[SnapshotManifest, list[bytes]]:
    """The manifest of the state at height (its entries and their tree), and its chunks'
    blobs (encoded)."""
    depth = _depth_for(sum(len(k) + len(v) + _ENTRY_OVERHEAD for k, v in entries.items()))
    groups: list[list[tuple[bytes, bytes]]] = [[] for _ in range(1 << depth)]
    for key, value in entries.items():
        groups[key_path(key) >> (PATH_BITS - depth)].append((key, value))
    subtrees, blobs = [], []
    for prefix, group in enumerate(groups):
        group.sort()
        if not group:
            subtrees.append(Subtree(bytes(32), EMPTY, 0))
            continue
        blob = Chunk(tuple(Entry(k, v) for k, v in group)).encode()
        blobs.append(blob)
        subtrees.append(Subtree(sha256(blob), tree.subtree_root(depth, prefix), len(group)))
    return SnapshotManifest(height, block_hash, tree.root, depth, tuple(subtrees)), blobs


def _subtree_root(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
    """The root of the subtree at depth holding entries (which share their first depth
    path bits): the whole tree of just them, had it been cut there."""
    return StateTree.of(entries).subtree_root(depth, key_path(entries[0][0]) >> (PATH_BITS - depth))


def read_chunk(manifest: SnapshotManifest, index: int, blob: bytes) -> list[tuple[bytes, bytes]]:
    """The entries of chunk index, checked against the manifest; SnapshotError naming the
    chunk if they are not what it lists."""
    subtree = manifest.subtrees[index]
    name = f"chunk {index} ({subtree.digest.hex()[:16]})"
    if sha256(blob) != subtree.digest:
        raise SnapshotError(f"{name}: the blob is not the one the manifest lists")
    try:
        chunk = Chunk.decode(blob)
    except ValueError as exc:
        raise SnapshotError(f"{name} does not decode: {exc}") from None
    entries = [(e.key, e.value) for e in chunk.entries]
    shift = PATH_BITS - manifest.depth
    for key, _ in entries:
        if key_path(key) >> shift != index:
            raise SnapshotError(f"{name}: entry {key.hex()[:32]} does not belong in it")
    if len({k for k, _ in entries}) != len(entries) or len(entries) != subtree.entries:
        raise SnapshotError(f"{name}: {len(entries)} entries where the manifest lists {subtree.entries}")
    if _subtree_root(entries, manifest.depth) != subtree.root:
        raise SnapshotError(f"{name}: its entries do not hash to the subtree root the manifest lists")
    return entries
