"""Finalizing blocks: a good block and commit move the head in one write; anything
wrong in the block or its commit is refused and changes nothing."""
import dataclasses

import pytest

from node.types import genesis as g
from node.types.blocks import certificate_from_precommits
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from node.state.chain import Chain, InvalidBlock
from node.types.crypto import SigningKey, sha256
from node.storage.chainstore import ChainStore, StoreCorrupted
from node.types.transactions import Transfer, sign_tx
from tests.oracles import NoOracle

VALIDATORS = [SigningKey(sha256(b"validator %d" % i)) for i in range(4)]
USER = SigningKey(sha256(b"user"))
BASE = g.load_genesis()
GENESIS = dataclasses.replace(
    BASE, chain_id="chain-test",
    validators=tuple(g.Validator(k.public_key, 10) for k in VALIDATORS),
    accounts=(g.Account(USER.public_key, 10_000, 0),))



def commit_for(block, signers=VALIDATORS, round_=0):
    body = VoteBody(PRECOMMIT, block.header.height, round_, block.hash)
    return certificate_from_precommits([sign_vote(k, GENESIS.chain_id, body) for k in signers])


@pytest.fixture
def chain(tmp_path):
    store = ChainStore.open(tmp_path / "db")
    yield Chain(GENESIS, store, NoOracle(GENESIS))
    store.close()


def _transfer(nonce, amount=5):
    return sign_tx(USER, GENESIS.chain_id, nonce, Transfer(VALIDATORS[0].public_key, amount),
                   GENESIS.economics.min_tx_fee)


def test_blocks_finalize_and_survive_a_reopen(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        chain = Chain(GENESIS, store, NoOracle(GENESIS))
        for height in range(1, 4):
            block, refused = chain.propose([_transfer(height - 1)], VALIDATORS[0].public_key, height)
            assert not refused
            chain.finalize(block, commit_for(block))
        head, root = chain.head, chain.state.root()
    with ChainStore.open(tmp_path / "db") as store:
        again = Chain(GENESIS, store, NoOracle(GENESIS))
        assert again.head == head and again.state.root() == root
        assert again.state.account(USER.public_key).nonce == 3
        assert again.block(2).txs[0] == _transfer(1)


def test_propose_leaves_out_failing_transactions(chain):
    block, refused = chain.propose([_transfer(0), _transfer(0), _transfer(1, 10**9)],
                                   VALIDATORS[0].public_key, 1)
    assert len(block.txs) == 1
    assert [e.reason for _, e in refused] == ["nonce_replayed", "insufficient_balance"]


@pytest.mark.parametrize("mutate,reason", [
    (lambda b: dataclasses.replace(b, header=dataclasses.replace(b.header, height=5)), "height 5"),
    (lambda b: dataclasses.replace(b, header=dataclasses.replace(b.header, prev_hash=bytes(32))), "parent"),
    (lambda b: dataclasses.replace(b, header=dataclasses.replace(b.header, chain_id="x")), "chain id"),
    (lambda b: dataclasses.replace(b, header=dataclasses.replace(b.header, state_root=bytes(32))), "state root"),
    (lambda b: dataclasses.replace(b, header=dataclasses.replace(b.header, proposer=USER.public_key)),
     "not in the committee"),
    (lambda b: dataclasses.replace(b, txs=()), "tx root"),
    # the genesis has no time field: it counts as 0
    (lambda b: dataclasses.replace(b, header=dataclasses.replace(b.header, time_ms=0)),
     "time 0 ms is not after its parent's 0 ms"),
])
def test_a_bad_block_is_refused_and_changes_nothing(chain, mutate, reason):
    block, _ = chain.propose([_transfer(0)], VALIDATORS[0].public_key, 1)
    bad = mutate(block)
    root = chain.state.root()
    with pytest.raises(InvalidBlock, match=reason):
        chain.finalize(bad, commit_for(bad))
    assert chain.height == 0 and chain.state.root() == root and chain.store.block(1) is None


@pytest.mark.parametrize("signers,reason", [
    (VALIDATORS[:2], "not more than 2/3"),
    (VALIDATORS[:2] + [SigningKey(sha256(b"outsider"))], "not in the committee"),
])
def test_a_commit_without_two_thirds_of_the_committee_is_refused(chain, signers, reason):
    block, _ = chain.propose([_transfer(0)], VALIDATORS[0].public_key, 1)
    with pytest.raises(InvalidBlock, match=reason):
        chain.finalize(block, commit_for(block, signers))
    assert chain.height == 0


def test_a_commit_with_a_forged_signature_is_refused(chain):
    block, _ = chain.propose([], VALIDATORS[0].public_key, 1)
    commit = commit_for(block)
    forged = dataclasses.replace(commit, signatures=(dataclasses.replace(
        commit.signatures[0], signature=bytes(64)),) + commit.signatures[1:])
    with pytest.raises(InvalidBlock, match="does not verify"):
        chain.finalize(block, forged)


def test_a_store_from_another_genesis_is_refused(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        Chain(GENESIS, store, NoOracle(GENESIS))
    other = dataclasses.replace(GENESIS, hash="00" * 32)
    with ChainStore.open(tmp_path / "db") as store, pytest.raises(StoreCorrupted, match="another genesis"):
        Chain(other, store, NoOracle(other))


def test_a_store_with_blocks_from_another_genesis_is_refused(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        chain = Chain(GENESIS, store, NoOracle(GENESIS))
        block, _ = chain.propose([], VALIDATORS[0].public_key, 1)
        chain.finalize(block, commit_for(block))
    other = dataclasses.replace(GENESIS, hash="11" * 32)
    with ChainStore.open(tmp_path / "db") as store, pytest.raises(StoreCorrupted, match="another genesis"):
        Chain(other, store, NoOracle(other))


def test_a_block_may_carry_another_valid_commit_of_the_head(chain):
    block, _ = chain.propose([], VALIDATORS[0].public_key, 1)
    chain.finalize(block, commit_for(block, VALIDATORS))
    # the next proposer saw only three of the four precommits
    other_view = commit_for(block, VALIDATORS[1:])
    nxt, _ = chain.propose([], VALIDATORS[1].public_key, 2)
    header = dataclasses.replace(nxt.header, last_commit_hash=other_view.hash)
    nxt = dataclasses.replace(nxt, header=header, last_commit=other_view)
    chain.finalize(nxt, commit_for(nxt))
    assert chain.height == 2


def test_a_block_carrying_an_insufficient_last_commit_is_refused(chain):
    block, _ = chain.propose([], VALIDATORS[0].public_key, 1)
    chain.finalize(block, commit_for(block))
    weak = commit_for(block, VALIDATORS[:2])
    nxt, _ = chain.propose([], VALIDATORS[1].public_key, 2)
    nxt = dataclasses.replace(nxt, header=dataclasses.replace(nxt.header, last_commit_hash=weak.hash),
                              last_commit=weak)
    with pytest.raises(InvalidBlock, match="last commit: .*not more than 2/3"):
        chain.finalize(nxt, commit_for(nxt))


def test_a_block_whose_time_is_not_after_its_parents_is_refused_also_after_a_restart(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        chain = Chain(GENESIS, store, NoOracle(GENESIS))
        block, _ = chain.propose([], VALIDATORS[0].public_key, 5_000)
        chain.finalize(block, commit_for(block))
    # reopened, as a node that replays or syncs: the parent's time comes from the store
    with ChainStore.open(tmp_path / "db") as store:
        chain = Chain(GENESIS, store, NoOracle(GENESIS))
        nxt, _ = chain.propose([], VALIDATORS[1].public_key, 9_000)
        for time_ms in (5_000, 4_999):
            bad = dataclasses.replace(nxt, header=dataclasses.replace(nxt.header, time_ms=time_ms))
            with pytest.raises(InvalidBlock, match=f"time {time_ms} ms is not after its parent's 5000 ms"):
                chain.finalize(bad, commit_for(bad))
        assert chain.height == 1
        good = dataclasses.replace(nxt, header=dataclasses.replace(nxt.header, time_ms=5_001))
        chain.finalize(good, commit_for(good))
        assert chain.height == 2


def test_a_proposal_is_timed_just_after_its_parent_when_the_clock_is_behind(chain):
    block, _ = chain.propose([], VALIDATORS[0].public_key, 5_000)
    chain.finalize(block, commit_for(block))
    nxt, _ = chain.propose([], VALIDATORS[1].public_key, 1_000)
    assert nxt.header.time_ms == 5_001
    chain.finalize(nxt, commit_for(nxt))


@pytest.mark.parametrize("reorder,reason", [
    (lambda sigs: sigs[::-1], "strictly ascending"),
    (lambda sigs: sigs[:1] + sigs, "strictly ascending"),
])
def test_a_commit_whose_signers_are_not_in_key_order_or_repeat_is_refused(chain, reorder, reason):
    block, _ = chain.propose([], VALIDATORS[0].public_key, 1)
    commit = commit_for(block)
    with pytest.raises(InvalidBlock, match=reason):
        chain.finalize(block, dataclasses.replace(commit, signatures=reorder(commit.signatures)))
    assert chain.height == 0
