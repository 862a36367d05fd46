"""The consensus state machine fed by hand, one edge case per test (h11 style)."""
from __future__ import annotations

import dataclasses

import pytest

from node.types.votes import NIL_HASH, PRECOMMIT, PREVOTE, Vote, VoteBody, sign_vote
from node.consensus.core import (Broadcast, ConsensusCore, Decide, Evidence, Lock, RecordLock,
                                 RecordSigned, ScheduleTimeout, SignedStep, Step, Timeout,
                                 TimeoutConfig)
from node.types.proposal import NO_POL_ROUND, Proposal, sign_proposal
from node.consensus.proposer import proposer_for
from node.types.crypto import SigningKey
from node.state.records import Committee
from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader, CommitteeMember
from node.consensus.commits import verify_commit
from node.types import crypto

CHAIN_ID = "core-test"
GENESIS_HASH = crypto.sha256(b"core test genesis")

KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
VALIDATORS = [(k.public_key, 1) for k in KEYS]
TIMEOUTS = TimeoutConfig()
H = 1


def make_block(height: int, round_: int, prev_hash: bytes, proposer: bytes, nonce: bytes = b"") -> Block:
    """An empty block; `nonce` lets two builders (an equivocator) make different ones."""
    header = BlockHeader(chain_id=CHAIN_ID, height=height, round=round_, time_ms=0,
                         prev_hash=prev_hash, last_commit_hash=NIL_HASH, tx_root=NIL_HASH,
                         close_hash=NIL_HASH, state_root=crypto.sha256(nonce), proposer=proposer)
    return Block(header=header, txs=(), last_commit=EMPTY_COMMIT)


def key_of(public_key: bytes, keys=KEYS) -> SigningKey:
    return next(k for k in keys if k.public_key == public_key)


def proposer_key(round_: int, validators=VALIDATORS, keys=KEYS) -> SigningKey:
    return key_of(proposer_for(validators, H, round_), keys)


def others(*excluded: SigningKey) -> list[SigningKey]:
    return [k for k in KEYS if k not in excluded]


def block(round_: int = 0, nonce: bytes = b"", prev_hash: bytes = GENESIS_HASH):
    return make_block(H, round_, prev_hash, proposer_key(round_).public_key, nonce)


def proposal(round_: int = 0, blk=None, pol_round: int = NO_POL_ROUND, key=None) -> Proposal:
    return sign_proposal(key or proposer_key(round_), CHAIN_ID, H, round_, pol_round,
                         blk or block(round_))


def vote(key: SigningKey, kind: int, round_: int, block_hash: bytes, height: int = H) -> Vote:
    return sign_vote(key, CHAIN_ID, VoteBody(kind, height, round_, block_hash))


def core(key: SigningKey | None, validators=VALIDATORS, **kwargs) -> ConsensusCore:
    return ConsensusCore(CHAIN_ID, H, validators, key, TIMEOUTS,
                         build_block=lambda height, round_: block(round_),
                         check_block=lambda b: b.header.prev_hash == GENESIS_HASH, **kwargs)


def feed(c: ConsensusCore, *messages) -> list:
    actions = []
    for message in messages:
        actions += c.receive(message)
    return actions


def sent(actions) -> list:
    return [a.message for a in actions if isinstance(a, Broadcast)]


def sent_votes(actions, kind: int) -> list[Vote]:
    return [m for m in sent(actions) if isinstance(m, Vote) and m.body.kind == kind]


def started(key: SigningKey | None, **kwargs) -> ConsensusCore:
    c = core(key, **kwargs)
    c.start()
    return c


def test_the_proposer_proposes_then_prevotes_its_block():
    key = proposer_key(0)
    actions = core(key).start()
    [prop] = [m for m in sent(actions) if isinstance(m, Proposal)]
    assert prop.proposer == key.public_key and prop.pol_round == NO_POL_ROUND
    assert prop.signature_valid(CHAIN_ID)
    [prevote] = sent_votes(actions, PREVOTE)
    assert prevote.body == VoteBody(PREVOTE, H, 0, prop.block.hash)


def test_a_validator_that_gets_no_proposal_prevotes_nil_when_the_propose_timeout_fires():
    key = others(proposer_key(0))[0]
    c = core(key)
    actions = c.start()
    assert ScheduleTimeout(Timeout(H, 0, Step.PROPOSE), TIMEOUTS.propose_ms) in actions
    assert sent(actions) == []
    [prevote] = sent_votes(c.on_timeout(Timeout(H, 0, Step.PROPOSE)), PREVOTE)
    assert prevote.body.block_hash == NIL_HASH


def test_a_valid_proposal_gets_a_prevote_for_its_block():
    c = started(others(proposer_key(0))[0])
    [prevote] = sent_votes(c.receive(proposal()), PREVOTE)
    assert prevote.body.block_hash == block().hash


def test_an_invalid_block_gets_a_nil_prevote():
    bad = block(prev_hash=bytes(32))
    c = started(others(proposer_key(0))[0])
    [prevote] = sent_votes(c.receive(proposal(blk=bad)), PREVOTE)
    assert prevote.body.block_hash == NIL_HASH


def test_a_bad_signature_or_the_wrong_proposer_is_ignored():
    me = others(proposer_key(0))[0]
    c = started(me)
    forged = dataclasses.replace(proposal(), signature=bytes(64))
    impostor = proposal(key=others(proposer_key(0), me)[0])
    assert c.receive(forged) == [] and c.receive(impostor) == []
    bad_vote = dataclasses.replace(vote(KEYS[0], PREVOTE, 0, NIL_HASH), signature=bytes(64))
    assert c.receive(bad_vote) == []
    assert c.step == Step.PROPOSE


def test_prevotes_from_more_than_two_thirds_lock_and_precommit():
    me = others(proposer_key(0))[0]
    c = started(me)
    b = block()
    actions = feed(c, proposal(), *(vote(k, PREVOTE, 0, b.hash) for k in others(me)[:2]))
    assert RecordLock(Lock(0, b)) in actions
    [precommit] = sent_votes(actions, PRECOMMIT)
    assert precommit.body.block_hash == b.hash
    assert c.locked_round == 0 and c.locked_value == b and c.valid_value == b


def test_two_thirds_of_the_votes_is_not_enough_it_must_be_more_of_the_power():
    heavy = [(KEYS[0].public_key, 4), *((k.public_key, 1) for k in KEYS[1:])]  # 4 of 7
    me = KEYS[3]
    c = started(me, validators=heavy)
    p = proposal(key=proposer_key(0, heavy), blk=make_block(H, 0, GENESIS_HASH, b"\x00" * 32))
    h = p.block.hash
    assert sent_votes(feed(c, p), PREVOTE)  # our own prevote: 1 of 7
    assert sent_votes(feed(c, vote(KEYS[1], PREVOTE, 0, h), vote(KEYS[2], PREVOTE, 0, h)),
                      PRECOMMIT) == []  # 3 of 7 prevotes from 3 of 4 validators
    assert sent_votes(feed(c, vote(KEYS[0], PREVOTE, 0, h)), PRECOMMIT)  # 7 of 7


def test_duplicates_count_once():
    me = others(proposer_key(0))[0]
    c = started(me)
    other = others(me)[0]
    dup = vote(other, PREVOTE, 0, block().hash)
    actions = feed(c, proposal(), dup, dup, dup, proposal())
    assert sent_votes(actions, PRECOMMIT) == []


def test_nil_polka_precommits_nil():
    me = others(proposer_key(0))[0]
    c = started(me)
    c.on_timeout(Timeout(H, 0, Step.PROPOSE))
    [precommit] = sent_votes(feed(c, *(vote(k, PREVOTE, 0, NIL_HASH) for k in others(me)[:2])),
                             PRECOMMIT)
    assert precommit.body.block_hash == NIL_HASH


def test_split_prevotes_wait_for_the_prevote_timeout_then_precommit_nil():
    me = others(proposer_key(0))[0]
    c = started(me)
    c.receive(proposal())
    a, b = others(me)[:2]
    actions = feed(c, vote(a, PREVOTE, 0, NIL_HASH), vote(b, PREVOTE, 0, block(nonce=b"x").hash))
    assert ScheduleTimeout(Timeout(H, 0, Step.PREVOTE), TIMEOUTS.prevote_ms) in actions
    assert sent_votes(actions, PRECOMMIT) == []
    [precommit] = sent_votes(c.on_timeout(Timeout(H, 0, Step.PREVOTE)), PRECOMMIT)
    assert precommit.body.block_hash == NIL_HASH


def test_precommits_from_more_than_two_thirds_decide_with_a_certificate_that_verifies():
    me = others(proposer_key(0))[0]
    c = started(me)
    b = block()
    actions = feed(c, proposal(), *(vote(k, PREVOTE, 0, b.hash) for k in others(me)[:2]),
                   *(vote(k, PRECOMMIT, 0, b.hash) for k in others(me)[:2]))
    [decide] = [a for a in actions if isinstance(a, Decide)]
    assert decide.block == b and c.decided == decide
    committee = Committee(tuple(CommitteeMember(pub, power) for pub, power in VALIDATORS))
    verify_commit(decide.certificate, committee, CHAIN_ID, H, b.hash)
    assert c.receive(vote(others(me)[2], PRECOMMIT, 0, b.hash)) == []  # done with this height


def test_precommits_of_a_later_round_are_kept_and_decide():
    me = others(proposer_key(2))[0]
    c = started(me)
    b = block(2)
    actions = feed(c, *(vote(k, PRECOMMIT, 2, b.hash) for k in others(me)), proposal(2, b))
    assert any(isinstance(a, Decide) and a.block == b for a in actions)


def test_a_late_proposal_without_precommits_decides_nothing():
    c = started(None)
    b = block()
    actions = feed(c, proposal(), *(vote(k, PRECOMMIT, 0, b.hash) for k in KEYS[:2]))
    assert not any(isinstance(a, Decide) for a in actions)


def test_votes_for_another_height_are_ignored():
    me = others(proposer_key(0))[0]
    c = started(me)
    assert feed(c, *(vote(k, PREVOTE, 3, NIL_HASH, height=H + 1) for k in others(me))) == []
    assert c.round == 0


def test_votes_from_more_than_a_third_in_a_later_round_move_us_there():
    me = KEYS[0]
    c = started(me)
    one, two = others(me)[:2]
    assert c.receive(vote(one, PREVOTE, 5, NIL_HASH)) == [] and c.round == 0
    actions = c.receive(vote(two, PRECOMMIT, 5, NIL_HASH))
    assert c.round == 5
    assert ScheduleTimeout(Timeout(H, 5, Step.PROPOSE), TIMEOUTS.delay_ms(Step.PROPOSE, 5)) in actions \
        or proposer_for(VALIDATORS, H, 5) == me.public_key


def test_a_precommit_timeout_starts_the_next_round_with_a_longer_timeout():
    me = others(proposer_key(0), proposer_key(1))[0]
    c = started(me)
    c.on_timeout(Timeout(H, 0, Step.PROPOSE))
    actions = feed(c, *(vote(k, PRECOMMIT, 0, NIL_HASH) for k in others(me)))
    assert ScheduleTimeout(Timeout(H, 0, Step.PRECOMMIT), TIMEOUTS.precommit_ms) in actions
    actions = c.on_timeout(Timeout(H, 0, Step.PRECOMMIT))
    assert c.round == 1
    assert ScheduleTimeout(Timeout(H, 1, Step.PROPOSE), TIMEOUTS.propose_ms + TIMEOUTS.delta_ms) in actions
    assert c.on_timeout(Timeout(H, 0, Step.PRECOMMIT)) == []  # stale


def locked_in_round_0(me: SigningKey) -> tuple[ConsensusCore, object]:
    c = started(me)
    b = block()
    feed(c, proposal(), *(vote(k, PREVOTE, 0, b.hash) for k in others(me)[:2]))
    assert c.locked_value == b
    c.on_timeout(Timeout(H, 0, Step.PRECOMMIT))
    assert c.round == 1
    return c, b


def test_a_locked_validator_prevotes_nil_for_another_block():
    me = others(proposer_key(0), proposer_key(1))[0]
    c, _ = locked_in_round_0(me)
    other = block(1, nonce=b"other")
    [prevote] = sent_votes(c.receive(proposal(1, other)), PREVOTE)
    assert prevote.body.block_hash == NIL_HASH


def test_a_locked_validator_prevotes_a_block_with_a_newer_proof_of_lock():
    me = others(proposer_key(0), proposer_key(1), proposer_key(2))[0]
    c, _ = locked_in_round_0(me)
    c.on_timeout(Timeout(H, 1, Step.PROPOSE))
    other = block(1, nonce=b"other")
    feed(c, *(vote(k, PREVOTE, 1, other.hash) for k in others(me)))  # a polka we missed the block of
    c.on_timeout(Timeout(H, 1, Step.PREVOTE))
    c.on_timeout(Timeout(H, 1, Step.PRECOMMIT))
    assert c.round == 2
    [prevote] = sent_votes(c.receive(proposal(2, other, pol_round=1)), PREVOTE)
    assert prevote.body.block_hash == other.hash


def test_a_locked_validator_rejects_a_proof_of_lock_older_than_its_lock():
    me = others(proposer_key(1), proposer_key(2))[0]
    c = core(me, last_signed=SignedStep(H, 1, Step.PRECOMMIT), lock=Lock(1, block()))
    c.start()
    other = block(0, nonce=b"other")
    feed(c, *(vote(k, PREVOTE, 0, other.hash) for k in others(me)))  # a polka in round 0
    c.on_timeout(Timeout(H, 1, Step.PRECOMMIT))
    assert c.round == 2
    [prevote] = sent_votes(c.receive(proposal(2, other, pol_round=0)), PREVOTE)
    assert prevote.body.block_hash == NIL_HASH


def test_the_next_proposer_reproposes_the_valid_block_with_its_round():
    me = proposer_key(1)
    assert me != proposer_key(0)
    c = started(me)
    b = block()
    feed(c, proposal(), *(vote(k, PREVOTE, 0, b.hash) for k in others(me)[:2]))
    actions = c.on_timeout(Timeout(H, 0, Step.PRECOMMIT))
    [prop] = [m for m in sent(actions) if isinstance(m, Proposal)]
    assert prop.block == b and prop.round == 1 and prop.pol_round == 0


def test_a_record_signed_precedes_every_signed_broadcast():
    me = proposer_key(0)
    c = core(me)
    actions = c.start()
    b = c.locked_value or [m for m in sent(actions) if isinstance(m, Proposal)][0].block
    actions += feed(c, *(vote(k, PREVOTE, 0, b.hash) for k in others(me)[:2]))
    actions += feed(c, *(vote(k, PRECOMMIT, 0, NIL_HASH) for k in others(me)))
    actions += c.on_timeout(Timeout(H, 0, Step.PRECOMMIT))
    broadcasts = [i for i, a in enumerate(actions) if isinstance(a, Broadcast)]
    assert len(broadcasts) >= 3
    for i in broadcasts:
        record, message = actions[i - 1], actions[i].message
        assert isinstance(record, RecordSigned)
        kind = Step.PROPOSE if isinstance(message, Proposal) else message.body.kind
        msg_round = message.round if isinstance(message, Proposal) else message.body.round
        assert record.step == SignedStep(H, msg_round, kind)
    lock_at = next(i for i, a in enumerate(actions) if isinstance(a, RecordLock))
    assert isinstance(actions[lock_at + 1], RecordSigned) and isinstance(actions[lock_at + 2], Broadcast)


def test_a_restarted_validator_signs_nothing_at_or_before_its_last_signed_step():
    me = proposer_key(0)
    c = core(me, last_signed=SignedStep(H, 0, Step.PREVOTE))
    actions = c.start()
    assert sent(actions) == [] and c.round == 0
    b = block()
    actions = feed(c, proposal(), *(vote(k, PREVOTE, 0, b.hash) for k in others(me)))
    [precommit] = sent_votes(actions, PRECOMMIT)  # a later step of the same round is allowed
    assert precommit.body.round == 0
    c2 = core(me, last_signed=SignedStep(H, 0, Step.PRECOMMIT))
    assert sent(c2.start()) == []
    assert sent(feed(c2, proposal(), *(vote(k, PREVOTE, 0, b.hash) for k in others(me)))) == []


def test_a_restarted_validator_keeps_its_lock():
    me = others(proposer_key(0), proposer_key(1))[0]
    c = core(me, last_signed=SignedStep(H, 0, Step.PRECOMMIT), lock=Lock(0, block()))
    c.start()
    c.on_timeout(Timeout(H, 0, Step.PRECOMMIT))
    [prevote] = sent_votes(c.receive(proposal(1, block(1, nonce=b"other"))), PREVOTE)
    assert prevote.body.block_hash == NIL_HASH


def test_conflicting_votes_from_one_validator_are_evidence_and_count_once_toward_any():
    me = others(proposer_key(0))[0]
    c = started(me)
    cheat = others(me)[0]
    first, second = vote(cheat, PREVOTE, 0, block().hash), vote(cheat, PREVOTE, 0, NIL_HASH)
    actions = feed(c, first, second, second)
    assert [a for a in actions if isinstance(a, Evidence)] == [Evidence(first, second)]
    tally = c._tally(0, PREVOTE)
    assert tally.power_any == 1 and tally.power_for == {block().hash: 1, NIL_HASH: 1}


def test_an_observer_decides_without_signing():
    c = started(None)
    b = block()
    actions = feed(c, proposal(), *(vote(k, PREVOTE, 0, b.hash) for k in KEYS),
                   *(vote(k, PRECOMMIT, 0, b.hash) for k in KEYS))
    assert sent(actions) == []
    assert any(isinstance(a, Decide) for a in actions)


@pytest.mark.parametrize("round_", [0, 3, 10])
def test_timeouts_grow_with_the_round(round_):
    t = TimeoutConfig(propose_ms=100, prevote_ms=50, precommit_ms=40, delta_ms=10)
    assert t.delay_ms(Step.PROPOSE, round_) == 100 + 10 * round_
    assert t.delay_ms(Step.PRECOMMIT, round_) == 40 + 10 * round_


def test_a_restarted_validator_counts_its_own_replayed_vote():
    me = others(proposer_key(0))[0]
    c = core(me, last_signed=SignedStep(H, 0, Step.PREVOTE))
    c.start()
    b = block()
    mine = vote(me, PREVOTE, 0, b.hash)  # signed before the crash, replayed from the driver's log
    [precommit] = sent_votes(feed(c, proposal(), mine, *(vote(k, PREVOTE, 0, b.hash)
                                                          for k in others(me, proposer_key(0))[:1]),
                                  vote(proposer_key(0), PREVOTE, 0, b.hash)), PRECOMMIT)
    assert precommit.body.block_hash == b.hash
