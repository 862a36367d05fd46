"""BlobStore: content addressing, corruption caught and quarantined, hostile digests refused."""
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.storage.blobstore import BlobCorrupted, BlobNotFound, BlobStore

DATA = b"checkpoint bytes " * 100


def test_put_get_round_trip(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(DATA)
    assert digest == hashlib.sha256(DATA).hexdigest()
    assert (tmp_path / "blobs" / digest[:2] / digest).read_bytes() == DATA
    assert store.get(digest) == DATA
    assert store.has(digest) and store.size(digest) == len(DATA)
    assert store.put(b"") == hashlib.sha256(b"").hexdigest()
    assert store.get(hashlib.sha256(b"").hexdigest()) == b""


def test_put_is_idempotent(tmp_path):
    store = BlobStore(tmp_path)
    assert store.put(DATA) == store.put(DATA)
    digest = hashlib.sha256(DATA).hexdigest()
    assert os.listdir(tmp_path / digest[:2]) == [digest]


def test_a_new_store_sees_blobs_already_on_disk(tmp_path):
    digest = BlobStore(tmp_path).put(DATA)
    assert BlobStore(tmp_path).get(digest) == DATA


def test_missing_blob(tmp_path):
    store = BlobStore(tmp_path)
    digest = "ab" * 32
    assert not store.has(digest)
    with pytest.raises(BlobNotFound):
        store.get(digest)
    with pytest.raises(BlobNotFound):
        store.size(digest)
    store.delete(digest)


def test_delete(tmp_path):
    store = BlobStore(tmp_path)
    digest = store.put(DATA)
    store.delete(digest)
    assert not store.has(digest)
    with pytest.raises(BlobNotFound):
        store.get(digest)
    assert store.put(DATA) == digest and store.get(digest) == DATA


@pytest.mark.parametrize("damage", [
    lambda data: data[:-1],
    lambda data: b"",
    lambda data: data[:7] + bytes([data[7] ^ 0x10]) + data[8:],
], ids=["truncated", "emptied", "one flipped bit"])
def test_a_damaged_blob_is_quarantined_and_never_returned(tmp_path, damage):
    store = BlobStore(tmp_path)
    digest = store.put(DATA)
    path = tmp_path / digest[:2] / digest
    path.write_bytes(damage(DATA))
    with pytest.raises(BlobCorrupted, match=digest):
        store.get(digest)
    assert not path.exists()
    [quarantined] = (tmp_path / "quarantine").iterdir()
    assert quarantined.name.startswith(digest)
    assert quarantined.read_bytes() == damage(DATA)
    with pytest.raises(BlobNotFound):
        store.get(digest)
    # Fetching the blob again repairs the store.
    assert store.put(DATA) == digest and store.get(digest) == DATA


@pytest.mark.parametrize("digest", [
    "../x", "../" + "a" * 61, "AB" * 32, "ab" * 31, "ab" * 33, "", "g" * 64,
    "ab" * 32 + "\n", "/" + "a" * 63, "quarantine", 42, None, b"ab" * 32,
])
def test_bad_digests_are_refused(tmp_path, digest):
    store = BlobStore(tmp_path)
    for call in (store.get, store.has, store.size, store.delete):
        with pytest.raises(ValueError, match="not a lowercase hex SHA-256 digest"):
            call(digest)


def test_temp_leftovers_are_removed_at_start(tmp_path):
    digest = BlobStore(tmp_path).put(DATA)
    leftover = tmp_path / digest[:2] / ".tmp-crashed"
    leftover.write_bytes(DATA[:10])
    other_fan_out = tmp_path / "ff"
    other_fan_out.mkdir()
    (other_fan_out / ".tmp-also").write_bytes(b"")
    store = BlobStore(tmp_path)
    assert not leftover.exists() and os.listdir(other_fan_out) == []
    assert store.get(digest) == DATA


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    store = BlobStore(tmp_path_factory.mktemp("blobs"))
    store.put(DATA)
    return store


@settings(max_examples=200, deadline=None)
@given(digest=st.text() | st.from_regex(r"[0-9a-fA-F./]{60,68}", fullmatch=True))
def test_any_string_is_a_value_error_or_not_found(fuzz_store, digest):
    try:
        assert fuzz_store.get(digest) == DATA
    except (ValueError, BlobNotFound):
        pass
