"""ConsensusChain's voting policy on block times, through the real consensus core over a
real Chain: a validator prevotes nil on a proposal whose time is more than the genesis'
max_clock_drift_ms ahead of its own clock, and for one within it; and it proposes at
the later of its clock and just after its parent's time."""
from __future__ import annotations

import dataclasses

import pytest

from node.consensus.core import Broadcast, ConsensusCore, TimeoutConfig
from node.consensus.proposer import proposer_for
from node.state.chain import Chain
from node.state.consensus_chain import ConsensusChain
from node.state.mempool import Mempool
from node.storage.chainstore import ChainStore
from node.types import genesis as g
from node.types.blocks import certificate_from_precommits
from node.types.crypto import SigningKey, sha256
from node.types.proposal import NO_POL_ROUND, sign_proposal
from node.types.votes import NIL_HASH, PRECOMMIT, PREVOTE, Vote, VoteBody, sign_vote
from tests.oracles import NoOracle

KEYS = [SigningKey(sha256(b"drift validator %d" % i)) for i in range(4)]
BASE = g.load_genesis()
GENESIS = dataclasses.replace(BASE, chain_id="drift-test",
                              validators=tuple(g.Validator(k.public_key, 10) for k in KEYS))
DRIFT = GENESIS.consensus.max_clock_drift_ms
NOW = 1_700_000_000_000


class Clock:
    def __init__(self, now_ms: int):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def chain(tmp_path):
    store = ChainStore.open(tmp_path / "db")
    yield Chain(GENESIS, store, NoOracle(GENESIS))
    store.close()


def _view(chain: Chain, key: SigningKey, clock: Clock) -> ConsensusChain:
    mempool = Mempool(10, GENESIS.consensus.max_tx_bytes, GENESIS.economics)
    return ConsensusChain(chain, mempool, key.public_key, clock, on_missing_blob=lambda digest: None)


def _prevote_on(chain: Chain, time_ms: int) -> tuple[bytes, bytes]:
    """(what a non-proposing validator with clock NOW prevotes for, the block's hash) when
    the height's proposer proposes a block at time_ms."""
    validators = [(k.public_key, 10) for k in KEYS]
    proposer = next(k for k in KEYS if k.public_key == proposer_for(validators, 1, 0))
    voter = next(k for k in KEYS if k is not proposer)
    view = _view(chain, voter, Clock(NOW))
    core = ConsensusCore(GENESIS.chain_id, 1, view.validators(), voter, TimeoutConfig(),
                         build_block=view.build_block, check_block=view.check_block)
    core.start()
    block, _ = chain.propose([], proposer.public_key, time_ms)
    assert block.header.time_ms == time_ms
    actions = core.receive(sign_proposal(proposer, GENESIS.chain_id, 1, 0, NO_POL_ROUND, block))
    prevotes = [a.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message, Vote)
                and a.message.body.kind == PREVOTE]
    assert len(prevotes) == 1
    return prevotes[0].body.block_hash, block.hash


def test_a_proposal_too_far_in_the_future_is_not_voted_for(chain, caplog):
    voted, _ = _prevote_on(chain, NOW + DRIFT + 1)
    assert voted == NIL_HASH
    assert "ms ahead of this node's clock, more than the allowed drift" in caplog.text


def test_a_proposal_within_the_drift_gets_the_prevote(chain):
    voted, block_hash = _prevote_on(chain, NOW + DRIFT)
    assert voted == block_hash


def test_the_proposer_uses_its_clock_unless_that_is_not_after_the_parent(chain):
    view = _view(chain, KEYS[0], Clock(NOW))
    first = view.build_block(1, 0)
    assert first.header.time_ms == NOW
    body = VoteBody(PRECOMMIT, 1, 0, first.hash)
    chain.finalize(first, certificate_from_precommits([sign_vote(k, GENESIS.chain_id, body) for k in KEYS]))
    view.clock_ms.now_ms = NOW - 60_000  # the clock stepped back
    assert view.build_block(2, 0).header.time_ms == NOW + 1
