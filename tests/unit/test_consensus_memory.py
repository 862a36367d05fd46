"""What a Byzantine validator can make consensus hold: one slot per validator beyond the
next round, a few messages per signer for the next height, a bounded buffer in bytes."""
from __future__ import annotations

from node.consensus.core import Decide
from node.consensus.pending import PER_SIGNER, PendingMessages
from node.consensus.rounds_ahead import ROUNDS_KEPT_AHEAD
from node.types.votes import NIL_HASH, PRECOMMIT, PREVOTE
from tests.unit.test_consensus_core import KEYS, block, feed, others, proposal, proposer_key, started, vote


def test_votes_for_thousands_of_future_rounds_cost_one_slot_and_move_nothing():
    me, byzantine = KEYS[0], KEYS[1]
    c = started(me)
    before = c.held_messages()
    for round_ in range(ROUNDS_KEPT_AHEAD + 1, 3000):
        for kind in (PREVOTE, PRECOMMIT):
            c.receive(vote(byzantine, kind, round_, NIL_HASH))
    assert c.held_messages() == before + 1
    assert c.round == 0  # one validator of four is not f+1


def test_the_round_skip_goes_where_more_than_a_third_of_the_power_has_reached():
    me = KEYS[0]
    c = started(me)
    one, two = others(me)[:2]
    c.receive(vote(one, PREVOTE, 9, NIL_HASH))
    assert c.round == 0
    c.receive(vote(two, PREVOTE, 7, NIL_HASH))
    assert c.round == 7  # both have reached 7; only one has reached 9


def test_held_messages_are_counted_once_their_round_comes_within_reach():
    me = others(proposer_key(5))[0]
    c = started(me)
    b = block(5)
    precommits = [vote(k, PRECOMMIT, 5, b.hash) for k in others(me)]
    actions = feed(c, proposal(5, b), *precommits)
    assert c.round == 5
    assert any(isinstance(a, Decide) and a.block == b for a in actions)


def test_an_equivocating_proposer_gets_a_few_proposals_counted_not_all():
    c = started(others(proposer_key(0))[0])
    before = c.held_messages()
    for nonce in range(50):
        c.receive(proposal(0, block(0, nonce=bytes([nonce]))))
    assert c.held_messages() - before <= 4 + 1  # MAX_VOTES_PER_STEP proposals and our prevote


def test_the_pending_buffer_is_bounded_in_bytes():
    pending = PendingMessages(max_bytes=3000)
    proposals = [proposal(r, block(r, nonce=bytes([r]))) for r in range(PER_SIGNER)]
    size = len(proposals[0].encode())
    accepted = [pending.add(p) for p in proposals]
    assert sum(accepted) == 3000 // size < PER_SIGNER
    assert len(pending.take()) == sum(accepted) and len(pending) == 0
