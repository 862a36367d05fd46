"""Pruning checkpoints after their challenge window (DESIGN.md §2): a miner's leaves file
must not become a way to delete other people's blobs on every pruning node."""
import dataclasses
import hashlib

from node.storage.blobstore import BlobStore
from node.types.merkle import merkle_root
from node.types.transactions import WorkCommitment
from node.uPoW.state import STATE_DOMAIN
from node.uPoW.work import encode_leaves
from node.verify.auditor import prune_checkpoints, prune_unit_blobs


def _checkpoint(store: BlobStore, tag: bytes) -> bytes:
    return bytes.fromhex(store.put(STATE_DOMAIN + tag))


def _commitment(store: BlobStore, leaves: list[bytes], root: bytes | None = None) -> WorkCommitment:
    leaves_hash = bytes.fromhex(store.put(encode_leaves(leaves)))
    return WorkCommitment(round=0, unit=0, shard=0, start_root=bytes(32),
                          checkpoint_root=merkle_root(leaves) if root is None else root,
                          checkpoint_count=len(leaves), leaves_hash=leaves_hash,
                          delta_hash=bytes(32), loss_trace=(), kernel_version=1, evidence_locks=())


def test_an_honest_units_checkpoints_go_except_those_kept(tmp_path):
    store = BlobStore(tmp_path)
    leaves = [_checkpoint(store, b"%d" % i) for i in range(4)]
    commitment = _commitment(store, leaves)
    assert prune_checkpoints(store, [commitment], {commitment.leaves_hash: (2,)}) == 3
    assert [store.has(leaf.hex()) for leaf in leaves] == [False, False, True, False]


def test_leaves_naming_others_deltas_and_models_delete_nothing_but_checkpoints(tmp_path):
    store = BlobStore(tmp_path)
    delta = bytes.fromhex(store.put(b"someone's delta"))
    model = bytes.fromhex(store.put(b"the current model"))
    own = _checkpoint(store, b"own")
    cheat = _commitment(store, [own, delta, model])
    assert prune_checkpoints(store, [cheat], {}) == 1
    assert store.has(delta.hex()) and store.has(model.hex()) and not store.has(own.hex())


def test_a_leaves_file_that_does_not_match_its_root_is_not_trusted(tmp_path):
    store = BlobStore(tmp_path)
    leaves = [_checkpoint(store, b"a"), _checkpoint(store, b"b")]
    forged = _commitment(store, leaves, root=hashlib.sha256(b"another root").digest())
    assert prune_checkpoints(store, [forged], {}) == 0
    assert all(store.has(leaf.hex()) for leaf in leaves)


def test_a_checkpoint_kept_as_fraud_evidence_survives_another_units_leaves(tmp_path):
    store = BlobStore(tmp_path)
    evidence = _checkpoint(store, b"fraud start")
    proven = _commitment(store, [_checkpoint(store, b"x"), evidence])
    rival = _commitment(store, [_checkpoint(store, b"y"), evidence])
    prune_checkpoints(store, [rival, proven], {proven.leaves_hash: (1,)})
    assert store.has(evidence.hex())


def test_a_forgotten_unit_s_carried_checkpoint_goes_unless_kept_and_only_if_a_training_state(tmp_path):
    """prune_unit_blobs deletes the checkpoint a forgotten unit carried (no later record
    keeps it for ever), but not one still kept, nor a blob of another kind named as one."""
    store = BlobStore(tmp_path)
    carried, still_carried = _checkpoint(store, b"carried"), _checkpoint(store, b"still carried")
    model = bytes.fromhex(store.put(b"the current model"))
    units = [dataclasses.replace(_commitment(store, [_checkpoint(store, b"%d" % i)]), carried_leaf=leaf)
             for i, leaf in enumerate((carried, still_carried, model))]
    prune_unit_blobs(store, units, {still_carried})
    assert not store.has(carried.hex())
    assert store.has(still_carried.hex()) and store.has(model.hex())
