"""The consensus driver fed by hand (h11 style): re-gossip to peers that lack a message,
the guard's record before a message leaves, the re-send after a restart, the buffer for
heights not reached yet, and the pause between heights."""
from __future__ import annotations

import pytest

from node.consensus.core import Evidence, Step, Timeout, TimeoutConfig
from node.consensus.driver import (ConsensusDriver, Finalized, ForgedMessage,
                                   NextHeight, Send, SetTimer)
from node.consensus.gossip import HeightGossip, Intake
from node.consensus.pending import MAX_PENDING, PER_SIGNER
from node.consensus.rounds_ahead import ROUNDS_KEPT_AHEAD
from node.consensus.guard import SignGuard
from node.consensus.proposer import proposer_for
from node.consensus.tally import MAX_VOTES_PER_STEP
from node.net.wire import decode_message
from node.types import crypto
from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader, CommitCertificate
from node.types.crypto import SigningKey
from node.types.proposal import NO_POL_ROUND, Proposal, sign_proposal
from node.types.votes import NIL_HASH, PRECOMMIT, PREVOTE, Vote, VoteBody, sign_vote

CHAIN_ID = "driver-test"
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
VALIDATORS = [(k.public_key, 1) for k in KEYS]
PEER_A, PEER_B = b"peer a", b"peer b"
BLOCK_INTERVAL_MS = 1000


class ListChain:
    """A chain of empty blocks in a list: the ChainView a driver needs."""

    def __init__(self, validators=VALIDATORS):
        self.hashes = [crypto.sha256(b"genesis")]
        self._validators = validators

    @property
    def height(self) -> int:
        return len(self.hashes) - 1

    def validators(self):
        return self._validators

    def build_block(self, height: int, round_: int) -> Block:
        return make_block(height, self.hashes[height - 1], proposer_for(self._validators, height, round_))

    def check_block(self, block: Block) -> bool:
        return block.header.prev_hash == self.hashes[-1]

    def finalize(self, block: Block, certificate: CommitCertificate) -> bool:
        self.hashes.append(block.hash)
        return True


def make_block(height: int, prev_hash: bytes, proposer: bytes) -> Block:
    header = BlockHeader(chain_id=CHAIN_ID, height=height, round=0, time_ms=0, prev_hash=prev_hash,
                         last_commit_hash=NIL_HASH, tx_root=NIL_HASH, close_hash=NIL_HASH,
                         state_root=NIL_HASH, proposer=proposer)
    return Block(header=header, txs=(), last_commit=EMPTY_COMMIT)


def key_of(public_key: bytes) -> SigningKey:
    return next(k for k in KEYS if k.public_key == public_key)


def driver(tmp_path, key: SigningKey, chain=None) -> ConsensusDriver:
    return ConsensusDriver(CHAIN_ID, key, chain or ListChain(), SignGuard(tmp_path / "guard"),
                           TimeoutConfig(), BLOCK_INTERVAL_MS)


def proposal(height: int = 1, round_: int = 0, chain=None) -> Proposal:
    chain = chain or ListChain()
    proposer = key_of(proposer_for(VALIDATORS, height, round_))
    return sign_proposal(proposer, CHAIN_ID, height, round_, NO_POL_ROUND,
                         chain.build_block(height, round_))


def vote(key: SigningKey, kind: int, block_hash: bytes, height: int = 1, round_: int = 0) -> Vote:
    return sign_vote(key, CHAIN_ID, VoteBody(kind, height, round_, block_hash))


def sends(actions) -> list[tuple[bytes, object]]:
    return [(a.peer, a.message) for a in actions if isinstance(a, Send)]


def not_proposer(height: int = 1, round_: int = 0) -> SigningKey:
    return next(k for k in KEYS if k.public_key != proposer_for(VALIDATORS, height, round_))


def test_what_was_signed_before_a_peer_connected_is_sent_when_it_does(tmp_path):
    """The devnet stall: a vote signed while no peer is connected is not lost."""
    d = driver(tmp_path, not_proposer())
    actions = d.start()
    assert sends(actions) == []  # nobody to send to yet
    prevote_nil = d.on_timer(Timeout(1, 0, Step.PROPOSE))
    assert sends(prevote_nil) == []
    sent = sends(d.peer_connected(PEER_A))
    assert [m.body.kind for _, m in sent] == [PREVOTE] and sent[0][0] == PEER_A


def test_a_new_connection_gets_everything_again_and_a_tick_only_what_it_lacks(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    d.peer_connected(PEER_A)
    d.on_timer(Timeout(1, 0, Step.PROPOSE))  # prevote nil, sent to A at once
    assert sends(d.tick([PEER_A])) == []  # A has it
    assert len(sends(d.peer_connected(PEER_A))) == 1  # a replaced connection may have lost it
    assert [p for p, _ in sends(d.tick([PEER_A, PEER_B]))] == [PEER_B]


def test_a_message_is_relayed_to_every_peer_but_its_sender(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    d.peer_connected(PEER_A)
    d.peer_connected(PEER_B)
    p = proposal()
    relayed = sends(d.receive(PEER_A, p))
    assert (PEER_B, p) in relayed and (PEER_A, p) not in relayed
    assert sends(d.receive(PEER_B, p)) == []  # a copy: nothing new
    assert sends(d.tick([PEER_A, PEER_B])) == []


def test_the_guard_holds_a_signed_message_before_it_is_sent(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    d.peer_connected(PEER_A)
    (peer, message), = sends(d.on_timer(Timeout(1, 0, Step.PROPOSE)))
    height, round_, kind, frame = SignGuard(tmp_path / "guard").load()
    assert (height, round_, kind) == (1, 0, PREVOTE) and decode_message(frame) == message


def test_a_restart_within_a_height_sends_what_it_signed_again(tmp_path):
    key = not_proposer()
    d = driver(tmp_path, key)
    d.start()
    d.receive(PEER_A, proposal())
    block_hash = proposal().block.hash
    others = [k for k in KEYS if k != key]
    for k in others:
        d.receive(PEER_A, vote(k, PREVOTE, block_hash))
    # it prevoted and precommitted the block; the process dies before either left
    restarted = driver(tmp_path, key)
    restarted.start()
    sent = [m for _, m in sends(restarted.peer_connected(PEER_B))]
    own = [(m.body.kind, m.body.block_hash) for m in sent if m.validator == key.public_key]
    assert own == [(PREVOTE, block_hash), (PRECOMMIT, block_hash)]


def test_messages_for_the_next_height_wait_for_it(tmp_path):
    key = not_proposer()
    chain = ListChain()
    d = driver(tmp_path, key, chain)
    d.start()
    p1 = proposal()
    d.receive(PEER_A, p1)
    future = vote(KEYS[0], PREVOTE, NIL_HASH, height=2)
    d.receive(PEER_A, future)
    actions = []
    for k in KEYS:
        if k != key:
            actions += d.receive(PEER_A, vote(k, PREVOTE, p1.block.hash))
    for k in KEYS:
        if k != key:
            actions += d.receive(PEER_A, vote(k, PRECOMMIT, p1.block.hash))
    assert [a.block for a in actions if isinstance(a, Finalized)] == [p1.block]
    assert SetTimer(NextHeight(2), BLOCK_INTERVAL_MS) in actions
    assert d.core is None and d.pending.messages == [future]
    d.on_timer(NextHeight(2))
    assert d.core.height == 2 and len(d.pending) == 0
    assert d.core._tally(0, PREVOTE).votes_of(KEYS[0].public_key)  # delivered


def test_the_pending_buffer_holds_the_next_height_only_and_a_few_messages_per_signer(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    d.receive(PEER_A, vote(KEYS[0], PREVOTE, NIL_HASH, height=3))
    assert len(d.pending) == 0  # two heights ahead: block sync's business
    for round_ in range(PER_SIGNER + 50):  # one signer floods the next height
        d.receive(PEER_A, vote(KEYS[0], PREVOTE, NIL_HASH, height=2, round_=round_))
    honest = vote(KEYS[1], PREVOTE, NIL_HASH, height=2)
    d.receive(PEER_A, honest)
    assert len(d.pending) == PER_SIGNER + 1 and honest in d.pending.messages


def test_the_pending_buffer_is_bounded_in_messages_whatever_the_number_of_signers(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    signers = [SigningKey(i.to_bytes(32, "big")) for i in range(1, MAX_PENDING // PER_SIGNER + 3)]
    for signer in signers:
        for round_ in range(PER_SIGNER):
            d.receive(PEER_A, vote(signer, PREVOTE, NIL_HASH, height=2, round_=round_))
    assert len(d.pending) == MAX_PENDING


def test_a_forged_message_is_refused(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    good = vote(KEYS[0], PREVOTE, NIL_HASH)
    forged = Vote(good.body, KEYS[1].public_key, good.signature)
    with pytest.raises(ForgedMessage):
        d.receive(PEER_A, forged)


def test_a_message_of_this_height_that_no_one_with_a_say_signed_is_refused(tmp_path):
    """An honest peer relays only what its own gossip book kept, so a relay of a vote
    from outside the committee, or of a proposal from another than the round's proposer,
    marks the peer as the attacker (the node bans it)."""
    d = driver(tmp_path, not_proposer())
    d.start()
    with pytest.raises(ForgedMessage, match="has no say"):
        d.receive(PEER_A, vote(SigningKey(b"\x09" * 32), PREVOTE, NIL_HASH))
    wrong = sign_proposal(not_proposer(), CHAIN_ID, 1, 0, NO_POL_ROUND, ListChain().build_block(1, 0))
    with pytest.raises(ForgedMessage, match="has no say"):
        d.receive(PEER_A, wrong)
    # the same from a height not being decided is not judged: this node may be behind
    d.receive(PEER_A, vote(SigningKey(b"\x09" * 32), PREVOTE, NIL_HASH, height=2))


def test_a_block_decided_by_sync_starts_the_next_height_at_once(tmp_path):
    chain = ListChain()
    d = driver(tmp_path, not_proposer(), chain)
    d.start()
    chain.hashes.append(crypto.sha256(b"synced block"))
    d.synced()
    assert d.core.height == 2


def test_equivocation_is_reported(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    d.receive(PEER_A, vote(KEYS[0], PREVOTE, NIL_HASH))
    actions = d.receive(PEER_A, vote(KEYS[0], PREVOTE, crypto.sha256(b"other")))
    assert any(isinstance(a, Evidence) for a in actions)


def test_the_gossip_book_keeps_only_what_the_core_would_count():
    book = HeightGossip(1, VALIDATORS)
    outsider = SigningKey(b"\x09" * 32)
    assert book.add(vote(outsider, PREVOTE, NIL_HASH), current_round=0) is Intake.FOREIGN
    assert book.add(vote(KEYS[0], PREVOTE, NIL_HASH, height=2), current_round=0) is Intake.NOT_KEPT
    far = vote(KEYS[0], PREVOTE, NIL_HASH, round_=ROUNDS_KEPT_AHEAD + 1)
    assert book.add(far, current_round=0) is Intake.NOT_KEPT
    wrong_proposer = sign_proposal(not_proposer(), CHAIN_ID, 1, 0, NO_POL_ROUND,
                                   ListChain().build_block(1, 0))
    assert book.add(wrong_proposer, current_round=0) is Intake.FOREIGN
    hashes = [crypto.sha256(bytes([i])) for i in range(MAX_VOTES_PER_STEP + 2)]
    kept = [book.add(vote(KEYS[0], PREVOTE, h), current_round=0) for h in hashes]
    assert kept == [Intake.KEPT] * MAX_VOTES_PER_STEP + [Intake.NOT_KEPT] * 2
    assert book.add(vote(KEYS[0], PREVOTE, hashes[0]), current_round=0) is Intake.COPY
    assert len(book.lacking(PEER_A)) == MAX_VOTES_PER_STEP
    assert book.lacking(PEER_A) == []


def test_votes_of_a_round_far_ahead_still_make_the_core_skip_to_it(tmp_path):
    d = driver(tmp_path, not_proposer())
    d.start()
    far = ROUNDS_KEPT_AHEAD + 3
    for k in KEYS[:2]:
        d.receive(PEER_A, vote(k, PREVOTE, NIL_HASH, round_=far))
    assert d.consensus_round == far
