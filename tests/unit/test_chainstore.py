"""ChainStore: one synced batch per block, refusals, reopen, and the open-time check."""
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.storage.chainstore import (BLOCK, BLOCK_HASH, COMMIT, HEAD, STATE, TX, ChainStore, Head,
                                     StoreCorrupted, StoreError)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def commit(store: ChainStore, height: int, txs: int = 2,
           writes: dict[bytes, bytes | None] | None = None, is_landmark: bool = False) -> None:
    store.commit_block(height, h(f"block{height}"), b"block-%d" % height,
                       b"commit-%d" % height, tx_hashes(height, txs),
                       writes or {}, h(f"root{height}"), is_landmark=is_landmark)


def tx_hashes(height: int, txs: int = 2) -> list[bytes]:
    return [h(f"tx{height}.{i}") for i in range(txs)]


def state_value(store: ChainStore, key: bytes) -> bytes | None:
    return dict(store.state_items()).get(key)


def build(path: pathlib.Path, blocks: int) -> None:
    """A good store: genesis and blocks 1..blocks."""
    with ChainStore.open(path) as store:
        store.store_genesis_state({b"alice": b"100"}, h("root0"), h("genesis"))
        for height in range(1, blocks + 1):
            commit(store, height, writes={b"k%d" % height: b"v"})


def test_empty_store(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        assert store.head() is None
        assert store.check_consistency() is None
        assert store.block(1) is None and store.commit(1) is None
        assert store.height_of(h("x")) is None and store.tx_location(h("x")) is None
        assert state_value(store, b"k") is None
        assert list(store.state_items()) == []


def test_genesis_then_blocks_round_trip(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        store.store_genesis_state({b"alice": b"100", b"bob": b"5"}, h("root0"), h("genesis"))
        assert store.head() == Head(0, h("genesis"), h("root0"))
        assert store.height_of(h("genesis")) == 0
        assert store.block(0) is None

        store.commit_block(1, h("b1"), b"B1", b"C1", [h("t0"), h("t1")],
                           {b"alice": b"90", b"bob": None, b"carol": b"10"}, h("root1"))
        assert store.head() == Head(1, h("b1"), h("root1"))
        assert store.block(1) == b"B1" and store.commit(1) == b"C1"
        assert store.height_of(h("b1")) == 1
        assert store.tx_location(h("t0")) == (1, 0)
        assert store.tx_location(h("t1")) == (1, 1)
        assert state_value(store, b"bob") is None
        assert list(store.state_items()) == [(b"alice", b"90"), (b"carol", b"10")]
        assert store.check_consistency() == store.head()


def test_first_block_on_a_store_without_genesis_is_height_1(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        with pytest.raises(ValueError, match="next height is 1"):
            commit(store, 0)
        commit(store, 1)
        assert store.head().height == 1


def test_reopen_keeps_everything(tmp_path):
    build(tmp_path / "db", 3)
    with ChainStore.open(tmp_path / "db") as store:
        assert store.head() == Head(3, h("block3"), h("root3"))
        assert [store.block(i) for i in (1, 2, 3)] == [b"block-1", b"block-2", b"block-3"]
        assert store.commit(2) == b"commit-2"
        assert store.height_of(h("block2")) == 2
        assert store.tx_location(h("tx3.1")) == (3, 1)
        assert dict(store.state_items()) == {b"alice": b"100", b"k1": b"v", b"k2": b"v",
                                             b"k3": b"v"}
        commit(store, 4)
        assert store.head().height == 4


@pytest.mark.parametrize("height", [0, 1, 3, 5])
def test_refuses_a_height_that_is_not_next(tmp_path, height):
    build(tmp_path / "db", 3)
    with ChainStore.open(tmp_path / "db") as store:
        with pytest.raises(ValueError, match="next height is 4"):
            commit(store, height)
        assert store.head().height == 3


def test_refuses_duplicate_hashes_and_bad_sizes(tmp_path):
    build(tmp_path / "db", 2)
    with ChainStore.open(tmp_path / "db") as store:
        with pytest.raises(ValueError, match="already stored"):
            store.commit_block(3, h("block2"), b"B", b"C", [], {}, h("r"))
        with pytest.raises(ValueError, match="already stored"):
            store.commit_block(3, h("genesis"), b"B", b"C", [], {}, h("r"))
        with pytest.raises(ValueError, match="tx hash .* already stored"):
            store.commit_block(3, h("b3"), b"B", b"C", [h("tx1.0")], {}, h("r"))
        with pytest.raises(ValueError, match="same tx hash twice"):
            store.commit_block(3, h("b3"), b"B", b"C", [h("t"), h("t")], {}, h("r"))
        with pytest.raises(ValueError, match="block_hash must be 32 bytes"):
            store.commit_block(3, b"short", b"B", b"C", [], {}, h("r"))
        with pytest.raises(ValueError, match="state_root must be 32 bytes"):
            store.commit_block(3, h("b3"), b"B", b"C", [], {}, b"\x00" * 33)
        with pytest.raises(ValueError, match="tx hash must be 32 bytes"):
            store.commit_block(3, h("b3"), b"B", b"C", [b"x"], {}, h("r"))
        assert store.head().height == 2 and store.block(3) is None


def test_genesis_only_on_an_empty_store(tmp_path):
    build(tmp_path / "db", 0)
    with ChainStore.open(tmp_path / "db") as store:
        with pytest.raises(ValueError, match="not empty"):
            store.store_genesis_state({}, h("root0"), h("genesis2"))
    with ChainStore.open(tmp_path / "db2") as store:
        commit(store, 1)
        with pytest.raises(ValueError, match="not empty"):
            store.store_genesis_state({}, h("root0"), h("genesis"))


def test_a_failing_batch_writes_nothing(tmp_path):
    build(tmp_path / "db", 1)
    with ChainStore.open(tmp_path / "db") as store:
        # The second state value is not bytes: the batch fails after some puts.
        with pytest.raises(TypeError):
            store.commit_block(2, h("block2"), b"B", b"C", [h("t")],
                               {b"a": b"1", b"b": 2}, h("root2"))
        assert store.head().height == 1
        assert store.block(2) is None and store.commit(2) is None
        assert store.height_of(h("block2")) is None
        assert store.tx_location(h("t")) is None
        assert state_value(store, b"a") is None
        commit(store, 2)
        assert store.check_consistency().height == 2


def test_a_reader_sees_block_state_indexes_and_head_together(tmp_path):
    build(tmp_path / "db", 1)
    with ChainStore.open(tmp_path / "db") as store:
        before = store._db.snapshot()  # a consistent view, as a reader in the middle would hold
        try:
            commit(store, 2, writes={b"k1": None, b"new": b"x"})
            height2 = (2).to_bytes(8, "big")
            assert Head.decode(before.get(HEAD)).height == 1
            assert before.get(BLOCK + height2) is None and before.get(COMMIT + height2) is None
            assert before.get(BLOCK_HASH + h("block2")) is None
            assert before.get(TX + h("tx2.0")) is None
            assert {k[len(STATE):]: v for k, v in before.iterator(prefix=STATE)} == {b"alice": b"100",
                                                                                   b"k1": b"v"}
        finally:
            before.close()
        assert store.head().height == 2
        assert store.block(2) == b"block-2" and store.commit(2) == b"commit-2"
        assert store.height_of(h("block2")) == 2
        assert store.tx_location(h("tx2.0")) == (2, 0)
        assert dict(store.state_items()) == {b"alice": b"100", b"new": b"x"}


def _raw(path: pathlib.Path, put: dict[bytes, bytes] | None = None,
         delete: tuple[bytes, ...] = ()) -> None:
    """Write raw keys behind the store's back, as a disk fault or a bug would."""
    db = plyvel.DB(str(path))
    try:
        for key, value in (put or {}).items():
            db.put(key, value)
        for key in delete:
            db.delete(key)
    finally:
        db.close()


def _head_value(path: pathlib.Path) -> bytes:
    db = plyvel.DB(str(path))
    try:
        return db.get(b"\x00head")
    finally:
        db.close()


def test_check_consistency_passes_on_a_good_store(tmp_path):
    build(tmp_path / "db", 5)
    with ChainStore.open(tmp_path / "db") as store:
        assert store.check_consistency() == Head(5, h("block5"), h("root5"))
    build(tmp_path / "genesis-only", 0)
    with ChainStore.open(tmp_path / "genesis-only") as store:
        assert store.check_consistency() == Head(0, h("genesis"), h("root0"))


def _flip_last_byte(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 1])


@pytest.mark.parametrize("corrupt,message", [
    (lambda p: _raw(p, put={b"\x00head": _flip_last_byte(_head_value(p))}),
     "head marker checksum does not match"),
    (lambda p: _raw(p, put={b"\x00head": _head_value(p)[:-1]}),
     "head marker has 103 bytes"),
    (lambda p: _raw(p, put={b"b" + (4).to_bytes(8, "big"): b"partial"}),
     "block at height 4 above head 3"),
    (lambda p: _raw(p, put={b"c" + (4).to_bytes(8, "big"): b"partial"}),
     "commit at height 4 above head 3"),
    (lambda p: _raw(p, put={b"b" + (0).to_bytes(8, "big"): b"?"}),
     "block at height 0"),
    (lambda p: _raw(p, delete=(b"b" + (2).to_bytes(8, "big"),)),
     "block at height 2 is missing"),
    (lambda p: _raw(p, delete=(b"b" + (3).to_bytes(8, "big"),)),
     "block at height 3 is missing"),
    (lambda p: _raw(p, delete=(b"c" + (1).to_bytes(8, "big"),)),
     "commit at height 1 is missing"),
    (lambda p: _raw(p, delete=(b"h" + h("block3"),)),
     "hash index does not map head block"),
    (lambda p: _raw(p, put={b"h" + h("block3"): (2).to_bytes(8, "big")}),
     "hash index does not map head block"),
    (lambda p: _raw(p, delete=(b"\x00head",)),
     "has data .* but no head marker"),
])
def test_check_consistency_names_what_is_wrong(tmp_path, corrupt, message):
    path = tmp_path / "db"
    build(path, 3)
    corrupt(path)
    with pytest.raises(StoreCorrupted, match=message):
        ChainStore.open(path)
    # open closed the DB it refused, so the path is free again.
    _raw(path)


def test_second_open_in_this_process_is_refused(tmp_path):
    with ChainStore.open(tmp_path / "db"):
        with pytest.raises(StoreError, match="another uponode process is using"):
            ChainStore.open(tmp_path / "db")


def test_open_while_another_process_holds_the_store_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, sys\n"
         "from node.storage.chainstore import ChainStore\n"
         "store = ChainStore.open(pathlib.Path(sys.argv[1]))\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"
         "store.close()\n",
         str(tmp_path / "db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=pathlib.Path(__file__).parents[2])
    try:
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(StoreError, match="another uponode process is using .*db"):
            ChainStore.open(tmp_path / "db")
    finally:
        holder.communicate(timeout=30)
    with ChainStore.open(tmp_path / "db") as store:
        assert store.head() is None


def test_unusable_path_is_a_store_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="cannot open store at"):
        ChainStore.open(tmp_path / "file")


def test_a_missing_parent_directory_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open store at"):
        ChainStore.open(tmp_path / "deleted" / "chain")


def test_a_store_begun_from_a_snapshot_holds_its_block_on_and_reopens(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        store.install_snapshot({b"alice": b"100"}, h("root500"), 500, h("block500"), b"block-500",
                               b"commit-500", h("genesis"), {120: (b"block-120", b"commit-120")}, True)
        assert store.base() == 500 and store.head() == Head(500, h("block500"), h("root500"))
        assert store.block(500) == b"block-500" and store.commit(500) == b"commit-500"
        assert store.block(499) is None and store.height_of(h("genesis")) == 0
        assert store.block(120) == b"block-120" and store.commit(120) == b"commit-120"
        assert store.landmarks() == [120, 500]
        commit(store, 501)
        with pytest.raises(ValueError, match="not empty"):
            store.install_snapshot({}, h("r"), 9, h("b"), b"b", b"c", h("genesis"), {}, False)
    with ChainStore.open(tmp_path / "db") as store:  # the open-time check counts from the base
        assert store.head().height == 501 and dict(store.state_items()) == {b"alice": b"100"}
    with ChainStore.open(tmp_path / "fresh") as store:
        assert store.base() == 1


def test_a_block_below_the_base_is_corruption(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        store.install_snapshot({}, h("root"), 500, h("block500"), b"b", b"c", h("genesis"), {}, False)
    _raw(tmp_path / "db", {BLOCK + (499).to_bytes(8, "big"): b"x"})
    with pytest.raises(StoreCorrupted, match="block at height 499, below the first kept height 500, is no landmark"):
        ChainStore.open(tmp_path / "db")


def test_a_snapshot_refuses_landmarks_not_below_it(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        with pytest.raises(ValueError, match="out of 1..499"):
            store.install_snapshot({}, h("root"), 500, h("block500"), b"b", b"c", h("genesis"),
                                   {500: (b"b", b"c")}, False)
        assert store.head() is None


def test_pruning_keeps_the_landmarks_and_drops_the_rest_with_their_index_entries(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        store.store_genesis_state({}, h("root0"), h("genesis"))
        for height in range(1, 21):
            commit(store, height, is_landmark=height in (4, 9))
        assert store.landmarks() == [4, 9]
        doomed = [x for x in range(1, 12) if x not in (4, 9)]
        with pytest.raises(ValueError, match="needs the index keys"):
            store.prune_below(12, {x: (h(f"block{x}"), tx_hashes(x)) for x in doomed[1:]})
        assert store.prune_below(12, {x: (h(f"block{x}"), tx_hashes(x)) for x in doomed}) == 9
        assert store.base() == 12 and store.block(11) is None and store.commit(3) is None
        assert store.height_of(h("block3")) is None and store.tx_location(h("tx3.0")) is None
        assert store.block(4) == b"block-4" and store.commit(9) == b"commit-9"
        assert store.tx_location(h("tx12.1")) == (12, 1) and store.height_of(h("genesis")) == 0
        with pytest.raises(ValueError, match="cannot prune below 21"):
            store.prune_below(21, {})
    with ChainStore.open(tmp_path / "db") as store:  # the open-time check allows the landmarks
        assert store.check_consistency().height == 20 and store.landmarks() == [4, 9]
    _raw(tmp_path / "db", delete=(COMMIT + (9).to_bytes(8, "big"),))
    with pytest.raises(StoreCorrupted, match="the landmark commit at height 9 is missing"):
        ChainStore.open(tmp_path / "db")


_keys = st.binary(max_size=4)
_blocks = st.lists(st.dictionaries(_keys, st.none() | st.binary(max_size=8), max_size=6),
                   max_size=8)


@settings(max_examples=40, deadline=None)
@given(genesis=st.dictionaries(_keys, st.binary(max_size=8), max_size=6), blocks=_blocks)
def test_state_items_match_a_dict_model(genesis, blocks):
    model = dict(genesis)
    with tempfile.TemporaryDirectory() as tmp:
        with ChainStore.open(pathlib.Path(tmp)) as store:
            store.store_genesis_state(genesis, h("root0"), h("genesis"))
            for height, writes in enumerate(blocks, start=1):
                commit(store, height, txs=1, writes=writes)
                for key, value in writes.items():
                    if value is None:
                        model.pop(key, None)
                    else:
                        model[key] = value
            assert list(store.state_items()) == sorted(model.items())
            assert all(state_value(store, k) == v for k, v in model.items())
            assert store.check_consistency().height == len(blocks)


def _disk(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


def test_compacting_after_pruning_keeps_the_disk_at_what_is_kept(tmp_path):
    """LevelDB keeps deleted blocks in its log and tables until a compaction reaches
    them: without compact_pruned the store would stay the size of every block written.
    Six rounds of 300 blocks of 3 kB, each pruned to the last 400 and compacted, as a
    node does at each close."""
    kept, written = 400, 0
    with ChainStore.open(tmp_path / "db") as store:
        store.store_genesis_state({}, h("root0"), h("genesis"))
        for height in range(1, 1801):
            store.commit_block(height, h(f"block{height}"), os.urandom(3000), b"commit-%d" % height,
                               tx_hashes(height), {}, h(f"root{height}"))
            written += 3000
            if height % 300 == 0 and height > kept:
                base = store.base()
                store.prune_below(height - kept + 1, {x: (h(f"block{x}"), tx_hashes(x))
                                                      for x in range(base, height - kept + 1)})
                store.compact_pruned()
        assert _disk(tmp_path / "db") < 1.5 * kept * 3000 and written == 4.5 * kept * 3000
        assert store.block(1400) is None and len(store.block(1401)) == 3000
    with ChainStore.open(tmp_path / "db") as store:
        assert store.check_consistency().height == 1800


def _leveldb_own_logs(path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.name.startswith(("LOG", "MANIFEST")))


def test_reopening_bounds_leveldbs_own_log_and_manifest(tmp_path):
    """Every compaction appends to LevelDB's info LOG and MANIFEST, which it rotates and
    rewrites only at open: reopening the store now and then keeps them bounded, and the
    store keeps serving what it holds across the reopen."""
    def cycle(store, height):
        store.commit_block(height, h(f"block{height}"), os.urandom(300), b"c", tx_hashes(height), {},
                           h(f"root{height}"))
        store.prune_below(height, {height - 1: (h(f"block{height - 1}"), tx_hashes(height - 1))})
        store.compact_pruned()

    grown = {}
    for reopen_every in (None, 8):
        with ChainStore.open(tmp_path / f"db{reopen_every}") as store:
            store.store_genesis_state({}, h("root0"), h("genesis"))
            store.commit_block(1, h("block1"), b"x", b"c", tx_hashes(1), {}, h("root1"))
            sizes = []
            for height in range(2, 130):
                cycle(store, height)
                if reopen_every and height % reopen_every == 0:
                    store.reopen()
                sizes.append(_leveldb_own_logs(tmp_path / f"db{reopen_every}"))
            assert store.check_consistency().height == 129 and store.block(129) is not None
        grown[reopen_every] = sizes
    assert grown[None][-1] > 3 * grown[None][20]  # without reopening: growing with every compaction
    assert max(grown[8][40:]) < 1.5 * max(grown[8][:40])  # with it: flat after the first reopens
