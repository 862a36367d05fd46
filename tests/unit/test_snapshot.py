"""Snapshots of the state: cut at one depth of the state tree, each chunk checked
against its subtree root as it arrives, the manifest against the state root; what is
wrong is named.  The snapshot store keeps the last few and deletes what only the
dropped ones used."""
import dataclasses
import json

import pytest
from hypothesis import given, settings, strategies as st

from node.state import snapshot as snap
from node.state.snapshot import Chunk, Entry, SnapshotError, SnapshotManifest, combined_root, make_snapshot, read_chunk
from node.state.snapshot_store import KEPT, SnapshotStore
from node.state.state_tree import StateTree
from node.storage.blobstore import BlobStore
from node.types.crypto import sha256

BLOCK = sha256(b"block")


def _entries(n: int, salt: bytes = b"") -> dict[bytes, bytes]:
    return {b"key %d" % i + salt: b"value %d" % i for i in range(n)}


def _snapshot(entries, target=None, monkeypatch=None):
    if target is not None:
        monkeypatch.setattr(snap, "CHUNK_TARGET_BYTES", target)
    return make_snapshot(entries, StateTree.of(entries.items()), 7, BLOCK)


def _read_all(manifest, blobs) -> dict[bytes, bytes]:
    found, chunks = {}, iter(blobs)
    for index, subtree in enumerate(manifest.subtrees):
        if subtree.entries:
            found.update(read_chunk(manifest, index, next(chunks)))
    return found


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=12), st.binary(max_size=20), max_size=60),
       st.sampled_from([1 << 20, 300, 40]))
def test_a_snapshot_reads_back_its_entries_and_its_roots_combine_into_the_state_root(entries, target):
    original = snap.CHUNK_TARGET_BYTES
    snap.CHUNK_TARGET_BYTES = target
    try:
        manifest, blobs = make_snapshot(entries, StateTree.of(entries.items()), 7, BLOCK)
    finally:
        snap.CHUNK_TARGET_BYTES = original
    assert manifest.state_root == StateTree.of(entries.items()).root == combined_root(manifest.subtrees)
    manifest.check_shape()
    assert SnapshotManifest.decode(manifest.encode()) == manifest
    assert _read_all(manifest, blobs) == entries


def test_the_depth_grows_with_the_state_so_that_chunks_stay_near_the_target(monkeypatch):
    manifest, blobs = _snapshot(_entries(2000), 2000, monkeypatch)
    assert manifest.depth >= 4 and len(blobs) > 10
    assert max(len(b) for b in blobs) < 8 * 2000


def test_a_tampered_entry_is_caught_in_its_chunk_and_the_chunk_named(monkeypatch):
    manifest, blobs = _snapshot(_entries(300), 2000, monkeypatch)
    index = next(i for i, s in enumerate(manifest.subtrees) if s.entries)
    chunk = Chunk.decode(blobs[0])
    forged = Chunk((dataclasses.replace(chunk.entries[0], value=b"more coins"), *chunk.entries[1:])).encode()
    # with a manifest that lists the forged blob, so that its digest checks out
    subtrees = list(manifest.subtrees)
    subtrees[index] = dataclasses.replace(subtrees[index], digest=sha256(forged))
    lying = dataclasses.replace(manifest, subtrees=tuple(subtrees))
    with pytest.raises(SnapshotError, match=f"chunk {index} .*subtree root"):
        read_chunk(lying, index, forged)
    # and a blob that is not the one listed
    with pytest.raises(SnapshotError, match="not the one the manifest lists"):
        read_chunk(manifest, index, forged)


def test_an_entry_in_the_wrong_chunk_or_a_short_chunk_is_named(monkeypatch):
    manifest, blobs = _snapshot(_entries(300), 2000, monkeypatch)
    filled = [i for i, s in enumerate(manifest.subtrees) if s.entries]
    first, second = Chunk.decode(blobs[0]), Chunk.decode(blobs[1])
    moved = Chunk((*first.entries, second.entries[0])).encode()
    subtrees = list(manifest.subtrees)
    subtrees[filled[0]] = dataclasses.replace(subtrees[filled[0]], digest=sha256(moved),
                                              entries=len(first.entries) + 1)
    with pytest.raises(SnapshotError, match="does not belong"):
        read_chunk(dataclasses.replace(manifest, subtrees=tuple(subtrees)), filled[0], moved)
    short = Chunk(first.entries[1:]).encode()
    subtrees = list(manifest.subtrees)
    subtrees[filled[0]] = dataclasses.replace(subtrees[filled[0]], digest=sha256(short))
    with pytest.raises(SnapshotError, match="entries where the manifest lists"):
        read_chunk(dataclasses.replace(manifest, subtrees=tuple(subtrees)), filled[0], short)


def test_a_manifest_whose_roots_do_not_make_its_state_root_or_whose_shape_is_wrong_is_refused(monkeypatch):
    manifest, _ = _snapshot(_entries(300), 2000, monkeypatch)
    with pytest.raises(SnapshotError, match="do not combine"):
        dataclasses.replace(manifest, state_root=sha256(b"another state")).check_shape()
    with pytest.raises(SnapshotError, match="chunks for depth"):
        dataclasses.replace(manifest, subtrees=manifest.subtrees[:-1]).check_shape()


def test_the_store_keeps_the_last_snapshots_and_deletes_only_what_no_kept_one_uses(tmp_path, monkeypatch):
    monkeypatch.setattr(snap, "CHUNK_TARGET_BYTES", 2000)
    blobs = BlobStore(tmp_path / "blobs")
    store = SnapshotStore(tmp_path / "snapshots.json", blobs)
    entries = _entries(300)
    refs = []
    for height in range(1, KEPT + 3):
        entries[b"key 0"] = b"changed at %d" % height  # one chunk changes, the others are shared
        tree = StateTree.of(entries.items())
        refs.append(store.take(dict(entries), tree, height * 30, BLOCK))
    assert [r.height for r in store.kept] == [r.height for r in refs[-KEPT:]]
    for ref in store.kept:  # every kept snapshot is whole
        manifest = SnapshotManifest.decode(blobs.get(ref.manifest.hex()))
        assert all(blobs.has(d.hex()) for d in manifest.digests)
    assert not blobs.has(refs[0].manifest.hex())
    # the list survives a restart; a list that does not read starts a new one
    assert SnapshotStore(tmp_path / "snapshots.json", blobs).kept == store.kept
    (tmp_path / "snapshots.json").write_text(json.dumps([{"height": "x"}]))
    assert SnapshotStore(tmp_path / "snapshots.json", blobs).kept == []


def test_entries_are_encoded_as_entries():
    assert Chunk.decode(Chunk((Entry(b"k", b"v"),)).encode()).entries == (Entry(b"k", b"v"),)
