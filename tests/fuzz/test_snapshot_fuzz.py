"""Snapshot manifests and chunks come from peers: decoding random bytes raises only
DecodeError (a ValueError), and reading a random chunk only SnapshotError."""
import dataclasses

from hypothesis import given, settings, strategies as st

from node.net.rpc_client import RpcError
from node.state.snapshot import Chunk, SnapshotError, SnapshotManifest, make_snapshot, read_chunk
from node.state.state_tree import StateTree
from node.types.crypto import sha256
from node.verify.state_sync import read_offers

ENTRIES = {b"key %d" % i: b"value %d" % i for i in range(40)}
MANIFEST, BLOBS = make_snapshot(ENTRIES, StateTree.of(ENTRIES.items()), 3, sha256(b"b"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decoding_random_bytes_raises_only_value_errors(data):
    for record in (SnapshotManifest, Chunk):
        try:
            record.decode(data)
        except ValueError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.sampled_from(BLOBS).map(lambda b: b[:-1] + bytes([b[-1] ^ 1])))
def test_reading_a_random_chunk_raises_only_snapshot_errors(blob):
    # listed by its own digest, so that decoding and the checks after it are reached
    listing = dataclasses.replace(MANIFEST, subtrees=(dataclasses.replace(MANIFEST.subtrees[0], digest=sha256(blob)),
                                                      *MANIFEST.subtrees[1:]))
    for manifest in (MANIFEST, listing):
        try:
            read_chunk(manifest, 0, blob)
        except SnapshotError as exc:
            assert "\n" not in str(exc)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)
offer = st.fixed_dictionaries({"height": json_values | st.integers(), "manifest": json_values | st.just("ab" * 32)})


@settings(max_examples=300, deadline=None)
@given(json_values | st.fixed_dictionaries({"snapshots": st.lists(offer, max_size=4)}))
def test_a_peer_s_list_of_snapshots_reads_or_raises_rpc_error(reply):
    try:
        offers = read_offers("127.0.0.1:1", reply)
    except RpcError as exc:
        assert "\n" not in str(exc)
        return
    assert all(type(o.height) is int and o.height >= 1 and len(o.manifest) == 32 for o in offers)
