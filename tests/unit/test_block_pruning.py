"""Pruning old blocks (DESIGN.md §5, retention): a node keeps the blocks of the retention
window and, however old, the landmarks: the blocks that changed the committee.  From
the landmarks alone a follower (state sync) reaches the head's committee and verifies
the head; a peer that hides a landmark only makes the head's commit fail to verify.

The chain is test_double_sign's: a rotation at height 7 and two removals by evidence."""
import asyncio

import aiohttp
import pytest
from aiohttp import web

from node.net.rpc_client import AsyncRpcClient
from node.rpc.api import json_errors, rpc_routes
from node.state.chain import Chain
from node.state.retention import first_kept_block
from node.state.snapshot import SnapshotError
from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.blocks import Block, CommitCertificate
from node.storage.home import init_home
from node.verify.chain_follow import ChainFollowError, FollowedChain
from node.verify.light_audit import LightAuditor
from node.verify.state_sync import StateSync
from tests.integration.test_rpc import make_api, unlimited
from tests.unit.test_double_sign import (GENESIS, REPORTER, V0, V1, V3, double_vote, net,  # noqa: F401
                                         play_worker_round)


def _changed_chain(net) -> list[int]:
    """A rotation, then removals: the heights where the committee changed."""
    play_worker_round(net)
    net.step()  # the close at height 7 rotates
    net.step([net.tx(REPORTER, double_vote(V3, 7)), net.tx(REPORTER, double_vote(V1, 7), later=1)])
    net.step([net.tx(REPORTER, double_vote(V0, 8))])
    net.step_to(12)
    return [7, 8, 9]


def _stored(chain: Chain, height: int) -> tuple[Block, CommitCertificate]:
    return Block.decode(chain.encoded_block(height)), CommitCertificate.decode(chain.encoded_commit(height))


def _follow(chain: Chain, heights: list[int]) -> FollowedChain:
    followed = FollowedChain(GENESIS)
    for height in heights:
        followed.verify_ahead(*_stored(chain, height))
        followed.advance(_stored(chain, height)[0])
    return followed


def test_the_blocks_that_change_the_committee_are_landmarks_and_survive_pruning(net, tmp_path):
    changes = _changed_chain(net)
    chain = net.validator
    assert chain.landmarks() == changes
    assert chain.prune_blocks(11) == 10 - len(changes) and chain.base == 11
    assert [h for h in range(1, 13) if chain.encoded_block(h) is not None] == changes + [11, 12]
    net.step()  # the pruned node goes on deciding blocks
    net.stores[1].close()
    with ChainStore.open(tmp_path / "validator") as reopened:  # and its store passes the open-time check
        assert reopened.check_consistency().height == 13 and reopened.landmarks() == changes


def test_a_follower_reaches_the_head_from_the_landmarks_alone(net):
    changes = _changed_chain(net)
    chain = net.validator
    chain.prune_blocks(12)
    followed = _follow(chain, changes + [12])
    assert followed.committee == chain.state.committee() and followed.head_hash == chain.head.block_hash


def test_a_hidden_landmark_leaves_the_head_unverified(net):
    """A peer hiding the rotation would have the follower check the head against the
    old committee, which did not sign it."""
    changes = _changed_chain(net)
    chain = net.validator
    with pytest.raises(ChainFollowError, match="block 8's commit: signer .* is not in the committee"):
        _follow(chain, changes[1:] + [12])
    with pytest.raises(ChainFollowError, match="block 12's commit"):
        _follow(chain, [12])
    with pytest.raises(ChainFollowError, match="not above height 8"):
        _follow(chain, [7, 8, 8])


def test_the_first_kept_block_is_the_oldest_kept_round_s_seed_or_a_lower_snapshot():
    consensus = GENESIS.consensus  # rounds of 7 blocks
    window = consensus.retention_rounds
    close = (window + 3) * consensus.round_blocks  # the close of round window + 2
    assert first_kept_block(consensus, close, []) == 3 * consensus.round_blocks
    assert first_kept_block(consensus, close, [2 * consensus.round_blocks]) == 2 * consensus.round_blocks
    assert first_kept_block(consensus, consensus.round_blocks, []) == 1


async def _serve(chain: Chain, tmp_path) -> tuple[web.AppRunner, str]:
    """chain served by the real API on 127.0.0.1; the runner and its host:port."""
    api = make_api(chain, blobs=BlobStore(tmp_path / "served-blobs"))
    app = web.Application(middlewares=[json_errors])
    app.add_routes(rpc_routes(api, unlimited()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, "127.0.0.1:%d" % runner.addresses[0][1]


async def _follow_over_http(chain: Chain, height: int, tmp_path):
    """StateSync's chain following, against chain served by the real API."""
    runner, peer = await _serve(chain, tmp_path)
    try:
        with ChainStore.open(tmp_path / "syncing") as store:
            sync = StateSync(GENESIS, store, BlobStore(tmp_path / "blobs"), [peer])
            async with aiohttp.ClientSession() as session:
                return await sync._follow_to(height, {peer: AsyncRpcClient(f"http://{peer}", session)}, peer)
    finally:
        await runner.cleanup()


def test_state_sync_follows_a_pruned_peer_by_its_landmarks_and_keeps_them(net, tmp_path):
    changes = _changed_chain(net)
    chain = net.validator
    chain.prune_blocks(12)
    block, commit, landmarks, is_landmark = asyncio.run(_follow_over_http(chain, 12, tmp_path))
    assert block.hash == chain.head.block_hash and commit.encode() == chain.encoded_commit(12)
    assert sorted(landmarks) == changes and not is_landmark
    assert landmarks[8] == (chain.encoded_block(8), chain.encoded_commit(8))


def test_a_peer_listing_heights_that_changed_nothing_gets_none_of_them_kept(net, tmp_path, monkeypatch):
    """An archive peer listing every height: each is checked, only real changes are kept."""
    changes = _changed_chain(net)
    chain = net.validator
    monkeypatch.setattr(chain, "landmarks", lambda: list(range(1, 13)))
    _, _, landmarks, _ = asyncio.run(_follow_over_http(chain, 12, tmp_path))
    assert sorted(landmarks) == changes


def test_a_peer_hiding_the_rotation_has_its_offer_refused(net, tmp_path, monkeypatch):
    _changed_chain(net)
    chain = net.validator
    monkeypatch.setattr(chain, "landmarks", lambda: [8, 9])
    with pytest.raises(SnapshotError, match="following the chain: block 8's commit"):
        asyncio.run(_follow_over_http(chain, 12, tmp_path))


def test_a_light_auditor_says_when_its_full_node_pruned_what_it_must_follow(net, tmp_path, caplog):
    """A light auditor follows from genesis: told of pruned blocks in one line, not left
    polling in silence as if the next block were not made yet."""
    _changed_chain(net)
    net.validator.prune_blocks(12)

    async def follow_from(height: int) -> None:
        runner, peer = await _serve(net.validator, tmp_path)
        try:
            auditor = LightAuditor(init_home(tmp_path / f"auditor-{height}"), [peer])
            auditor.followed.height = height
            async with aiohttp.ClientSession() as session:
                auditor._clients = [(peer, AsyncRpcClient(f"http://{peer}", session))]
                assert not await auditor._follow()
        finally:
            await runner.cleanup()

    caplog.set_level("DEBUG", "uponode.light")
    asyncio.run(follow_from(12))  # at the head: the next block is not made yet
    assert "pruned" not in caplog.text
    asyncio.run(follow_from(0))
    assert "it pruned the blocks this auditor still has to follow" in caplog.text
