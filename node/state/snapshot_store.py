"""The snapshots a full node keeps for others to state-sync from.

At each round's close the node writes the state as a snapshot (node.state.snapshot):
its chunks and manifest go into the blob store, where GET /blobs/{sha256} serves them,
and the list of the last KEPT snapshots into a small file beside the chain's store,
replaced atomically.  A dropped snapshot's chunks are deleted unless a kept one
shares them (a chunk whose entries did not change has the same digest).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib

from node.state.snapshot import SnapshotManifest, make_snapshot
from node.state.state_tree import StateTree
from node.storage.blobstore import BlobCorrupted, BlobNotFound, BlobStore

log = logging.getLogger("uponode.snapshots")

KEPT = 3


@dataclasses.dataclass(frozen=True)
class SnapshotRef:
    height: int
    manifest: bytes  # the manifest blob's digest

    def to_json(self) -> dict:
        return {"height": self.height, "manifest": self.manifest.hex()}


class SnapshotStore:
    def __init__(self, index_path: pathlib.Path, blobs: BlobStore):
        self.index_path = index_path
        self.blobs = blobs
        self.kept: list[SnapshotRef] = self._read_index()

    def _read_index(self) -> list[SnapshotRef]:
        try:
            listed = json.loads(self.index_path.read_text())
            return [SnapshotRef(int(item["height"]), bytes.fromhex(item["manifest"])) for item in listed]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError, KeyError) as exc:
            # only this node writes it: start a new list rather than refuse to start
            log.warning("%s does not read (%s); keeping no snapshots until the next one", self.index_path, exc)
            return []

    def take(self, entries: dict[bytes, bytes], tree: StateTree, height: int, block_hash: bytes) -> SnapshotRef:
        """Write the state at height (entries and their tree, as they were then) as a
        snapshot, keep it, and drop the oldest beyond KEPT.  Blocking: run off the loop."""
        manifest, chunks = make_snapshot(entries, tree, height, block_hash)
        for chunk in chunks:
            self.blobs.put(chunk)
        ref = SnapshotRef(height, bytes.fromhex(self.blobs.put(manifest.encode())))
        kept = [r for r in self.kept if r.height != height] + [ref]
        dropped, self.kept = kept[:-KEPT], kept[-KEPT:]
        self._write_index()
        self._delete(dropped)
        return ref

    def _write_index(self) -> None:
        temp = self.index_path.with_suffix(".tmp")
        with open(temp, "w") as out:
            json.dump([r.to_json() for r in self.kept], out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.index_path)

    def _digests(self, ref: SnapshotRef) -> set[bytes]:
        try:
            manifest = SnapshotManifest.decode(self.blobs.get(ref.manifest.hex()))
        except (BlobNotFound, BlobCorrupted, ValueError):
            return {ref.manifest}
        return {ref.manifest, *manifest.digests}

    def _delete(self, dropped: list[SnapshotRef]) -> None:
        still_used = set().union(*(self._digests(r) for r in self.kept))
        for ref in dropped:
            for digest in self._digests(ref) - still_used:
                self.blobs.delete(digest.hex())
