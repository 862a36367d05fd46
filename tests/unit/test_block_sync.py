"""Block sync between two real chains (LevelDB stores): a node behind asks one peer, finalizes
every block with its commit checked, asks again while behind, and refuses a bad block."""
import dataclasses

import pytest

from node.net.wire import Blocks, BlockWithCommit, GetBlocks, Status
from node.state.block_sync import BlockSync, InvalidSyncedBlock, SyncStep
from node.state.chain import Chain
from node.storage.chainstore import ChainStore
from tests.oracles import NoOracle
from tests.unit.test_chain import GENESIS, VALIDATORS, commit_for

PEER, OTHER = b"p" * 32, b"o" * 32


def _grow(chain: Chain, heights: int) -> None:
    for height in range(chain.height + 1, chain.height + 1 + heights):
        block, _ = chain.propose([], VALIDATORS[0].public_key, height)
        chain.finalize(block, commit_for(block))


@pytest.fixture
def chains(tmp_path):
    with ChainStore.open(tmp_path / "ahead") as a, ChainStore.open(tmp_path / "behind") as b:
        ahead, behind = Chain(GENESIS, a, NoOracle(GENESIS)), Chain(GENESIS, b, NoOracle(GENESIS))
        _grow(ahead, 7)
        yield ahead, behind


def _sync(chain: Chain, batch: int = 3) -> tuple[BlockSync, list]:
    finalized = []
    return BlockSync(chain, finalized.append, lambda digest: None, batch=batch), finalized


def test_a_node_behind_catches_up_in_batches_from_the_peer_it_asked(chains):
    ahead, behind = chains
    serving, _ = _sync(ahead)
    sync, finalized = _sync(behind)
    request = sync.on_status(PEER, Status(ahead.height, ahead.head.block_hash))
    assert request == GetBlocks(1, 3) and sync.syncing
    assert sync.on_status(OTHER, Status(ahead.height, ahead.head.block_hash)) is None  # one at a time
    while request is not None:
        step = sync.on_blocks(PEER, serving.serve(request))
        assert step.advanced
        request = step.next_request
    assert behind.head == ahead.head and not sync.syncing
    assert [b.header.height for b in finalized] == list(range(1, 8))


def test_blocks_nobody_asked_for_are_ignored(chains):
    ahead, behind = chains
    serving, _ = _sync(ahead)
    sync, finalized = _sync(behind)
    sync.on_status(PEER, Status(ahead.height, ahead.head.block_hash))
    step = sync.on_blocks(OTHER, serving.serve(GetBlocks(1, 3)))
    assert step == SyncStep(False, None) and behind.height == 0 and not finalized


def test_an_unanswered_request_is_asked_again_after_retry(chains):
    ahead, behind = chains
    sync, _ = _sync(behind)
    status = Status(ahead.height, ahead.head.block_hash)
    assert sync.on_status(PEER, status) is not None
    assert sync.on_status(OTHER, status) is None
    sync.retry()
    assert sync.on_status(OTHER, status) == GetBlocks(1, 3)


def test_a_block_with_a_bad_commit_proves_the_sender_wrong(chains):
    ahead, behind = chains
    sync, finalized = _sync(behind)
    sync.on_status(PEER, Status(ahead.height, ahead.head.block_hash))
    good = ahead.block(1)
    forged = BlockWithCommit(good, dataclasses.replace(commit_for(good), signatures=()))
    with pytest.raises(InvalidSyncedBlock, match="synced block 1"):
        sync.on_blocks(PEER, Blocks((forged,)))
    assert behind.height == 0 and not finalized


def test_serving_stops_at_the_head_and_at_the_batch(chains):
    ahead, _ = chains
    serving, _ = _sync(ahead, batch=50)
    assert [i.block.header.height for i in serving.serve(GetBlocks(5, 100)).items] == [5, 6, 7]
    assert serving.serve(GetBlocks(8, 10)).items == ()
    assert len(_sync(ahead, batch=2)[0].serve(GetBlocks(1, 10)).items) == 2


def test_a_peer_that_pruned_the_blocks_asked_for_is_told_apart(chains):
    """A node left behind past the retention window gets no blocks from a pruned peer:
    the step says so (the node tells its operator to restart it from a snapshot)."""
    ahead, behind = chains
    ahead.prune_blocks(4)
    serving, _ = _sync(ahead)
    sync, _ = _sync(behind)
    request = sync.on_status(PEER, Status(ahead.height, ahead.head.block_hash))
    assert sync.on_blocks(PEER, serving.serve(request)) == SyncStep(False, None, pruned=True)
    _grow(behind, 4)  # a node caught up to the pruned peer's first block syncs on as before
    request = sync.on_status(PEER, Status(ahead.height, ahead.head.block_hash))
    assert request == GetBlocks(5, 3) and sync.on_blocks(PEER, serving.serve(request)).advanced


def test_a_pruned_peer_is_not_asked_again_and_an_archive_peer_serves(chains, tmp_path):
    """Peer exchange connects a node behind to pruned peers and archives alike: one that
    answered with nothing is skipped at this height, the archive is asked, and the node is
    told its peers pruned only when every peer ahead has answered so."""
    ahead, behind = chains
    pruned, _ = _sync(ahead)
    with ChainStore.open(tmp_path / "archive") as store:
        archive_chain = Chain(GENESIS, store, NoOracle(GENESIS))
        _grow(archive_chain, 1)
        for height in range(2, ahead.height + 1):
            archive_chain.finalize(ahead.block(height), commit_for(ahead.block(height)))
        ahead.prune_blocks(4)
        archive, _ = _sync(archive_chain)
        sync, _ = _sync(behind)
        head = Status(ahead.height, ahead.head.block_hash)
        sync.on_status(OTHER, head)  # the archive is known to be ahead too
        sync.retry()
        request = sync.on_status(PEER, head)
        assert sync.on_blocks(PEER, pruned.serve(request)) == SyncStep(False, None, pruned=False)
        assert sync.on_status(PEER, head) is None  # not asked again
        request = sync.on_status(OTHER, head)
        assert sync.on_blocks(OTHER, archive.serve(request)).advanced and behind.height == 3
        sync.retry()  # no request out: only the mark keeps the pruned peer from being asked
        assert sync.on_status(PEER, head) is None  # nor a few blocks later
        assert sync.on_status(OTHER, head) == GetBlocks(4, 3)
