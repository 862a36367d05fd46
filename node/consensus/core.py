"""Tendermint consensus for one height as a sans-I/O state machine.

The algorithm is Algorithm 1 of Buchman, Kwon and Milosevic, "The latest gossip on BFT
consensus" (arXiv:1807.04938); comments cite its line numbers.  The core reads no clock,
opens no socket and writes no file: inputs are `start`, `receive` and `on_timeout`, and
each returns the actions the driver must carry out, in order:

  RecordSigned / RecordLock  persist with a synced write before the next Broadcast leaves;
                             on restart pass them back as last_signed and lock
  Broadcast                  send to every peer (the core has already counted its own message);
                             a driver that also logs it can replay it into a restarted core
                             through receive, since the core will not sign that step again
  ScheduleTimeout            call on_timeout(timeout) after delay_ms of real or simulated time
  Decide                     the height is final: store block + certificate, start the next height
  Evidence                   one validator signed two different blocks for one step

Voting power is counted, not messages; "+2/3" is strictly more than 2/3 of the total power,
and "f+1" strictly more than 1/3.

Memory is bounded per validator: the current and next round are kept in full (a few
messages per validator and step); of later rounds only each validator's latest message
(node.consensus.rounds_ahead), so votes for a thousand future rounds cost one slot.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Callable, Sequence

from node.types.blocks import Block, CommitCertificate, certificate_from_precommits
from node.types.votes import NIL_HASH, PRECOMMIT, PREVOTE, Vote, VoteBody, sign_vote
from node.types.proposal import NO_POL_ROUND, Proposal, sign_proposal
from node.consensus.proposer import proposer_for
from node.consensus.rounds_ahead import ROUNDS_KEPT_AHEAD, RoundsAhead
from node.consensus.tally import MAX_VOTES_PER_STEP, VoteTally
from node.types.crypto import SigningKey


class Step(enum.IntEnum):
    """The steps of a round; also the order in which a validator signs within one."""
    PROPOSE = 0
    PREVOTE = PREVOTE
    PRECOMMIT = PRECOMMIT


@dataclasses.dataclass(frozen=True)
class TimeoutConfig:
    """Milliseconds to wait in each step; every round waits `delta_ms` longer than the last,
    so that rounds eventually outlast any message delay after the network settles."""
    propose_ms: int = 1000
    prevote_ms: int = 500
    precommit_ms: int = 500
    delta_ms: int = 250

    def delay_ms(self, step: Step, round_: int) -> int:
        base = {Step.PROPOSE: self.propose_ms, Step.PREVOTE: self.prevote_ms,
                Step.PRECOMMIT: self.precommit_ms}[step]
        return base + round_ * self.delta_ms


@dataclasses.dataclass(frozen=True, order=True)
class SignedStep:
    """The last (height, round, step) a validator signed; it never signs at or before it again."""
    height: int
    round: int
    kind: Step


@dataclasses.dataclass(frozen=True)
class Lock:
    """A validator's locked block: it precommitted `block` in `round` and must not forget it."""
    round: int
    block: Block


@dataclasses.dataclass(frozen=True)
class Timeout:
    height: int
    round: int
    step: Step


@dataclasses.dataclass(frozen=True)
class Broadcast:
    message: Proposal | Vote


@dataclasses.dataclass(frozen=True)
class ScheduleTimeout:
    timeout: Timeout
    delay_ms: int


@dataclasses.dataclass(frozen=True)
class RecordSigned:
    step: SignedStep


@dataclasses.dataclass(frozen=True)
class RecordLock:
    lock: Lock


@dataclasses.dataclass(frozen=True)
class Decide:
    block: Block
    certificate: CommitCertificate


@dataclasses.dataclass(frozen=True)
class Evidence:
    first: Vote
    second: Vote


Action = Broadcast | ScheduleTimeout | RecordSigned | RecordLock | Decide | Evidence


class ConsensusCore:
    """Consensus on the block at one height; a driver makes a fresh core for each height."""

    def __init__(self, chain_id: str, height: int, validators: Sequence[tuple[bytes, int]],
                 key: SigningKey | None, timeouts: TimeoutConfig,
                 build_block: Callable[[int, int], Block | None], check_block: Callable[[Block], bool],
                 last_signed: SignedStep | None = None, lock: Lock | None = None):
        """validators: (pubkey, power) in the committee's canonical order; key None: an
        observer that follows but never signs; last_signed and lock: as last persisted through
        RecordSigned and RecordLock, so that a restart neither double-signs nor unlocks."""
        self.chain_id = chain_id
        self.height = height
        self.validators = tuple(validators)
        self.power = dict(self.validators)
        self.total_power = sum(self.power.values())
        self.key = key
        self.timeouts = timeouts
        self.build_block = build_block
        self.check_block = check_block
        self.last_signed = last_signed
        self.round = 0
        self.step = Step.PROPOSE
        self.decided: Decide | None = None
        current_lock = lock if lock is not None and lock.block.header.height == height else None
        self.locked_round = current_lock.round if current_lock else -1
        self.locked_value: Block | None = current_lock.block if current_lock else None
        self.valid_round = self.locked_round
        self.valid_value = self.locked_value
        self._proposals: dict[int, dict[bytes, Proposal]] = {}  # round -> block hash -> proposal
        self._blocks: dict[bytes, Block] = {}
        self._validity: dict[bytes, bool] = {}
        self._tallies: dict[tuple[int, int], VoteTally] = {}  # (round, kind) -> votes
        self._ahead = RoundsAhead()
        self._evidence: set[tuple[bytes, int, int]] = set()
        self._once: set[tuple[str, int]] = set()  # rules that fire once per round
        self._actions: list[Action] = []

    # ---- inputs -------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Begin the height; a validator restarted mid-height resumes at its last signed round."""
        resume = self.last_signed
        self._start_round(resume.round if resume and resume.height == self.height else 0)
        return self._run()

    def receive(self, message: Proposal | Vote) -> list[Action]:
        if self.decided is None:
            if isinstance(message, Proposal):
                self._on_proposal(message)
            elif isinstance(message, Vote):
                self._on_vote(message, verified=False)
        return self._run()

    def on_timeout(self, timeout: Timeout) -> list[Action]:
        if self.decided is None and timeout.height == self.height and timeout.round == self.round:
            if timeout.step == Step.PROPOSE and self.step == Step.PROPOSE:  # line 57
                self._prevote(NIL_HASH)
            elif timeout.step == Step.PREVOTE and self.step == Step.PREVOTE:  # line 61
                self._precommit(NIL_HASH)
            elif timeout.step == Step.PRECOMMIT:  # line 65
                self._start_round(self.round + 1)
        return self._run()

    def held_messages(self) -> int:
        """Proposals and votes this core holds: bounded per validator, whatever it is sent."""
        votes = sum(len(by_hash) for tally in self._tallies.values() for by_hash in tally.votes.values())
        return votes + sum(map(len, self._proposals.values())) + len(self._ahead)

    # ---- message intake -----------------------------------------------------------------

    def _on_proposal(self, proposal: Proposal) -> None:
        block_hash = proposal.block.hash
        proposals = self._proposals.get(proposal.round, {})
        if (proposal.height != self.height or block_hash in proposals
                or len(proposals) >= MAX_VOTES_PER_STEP  # an equivocating proposer's noise
                or not (proposal.pol_round == NO_POL_ROUND or proposal.pol_round < proposal.round)
                or proposal.proposer != proposer_for(self.validators, self.height, proposal.round)
                or not proposal.signature_valid(self.chain_id)):
            return
        if proposal.round > self.round + ROUNDS_KEPT_AHEAD:
            self._ahead.hold(proposal.proposer, proposal)
            return
        self._proposals.setdefault(proposal.round, {})[block_hash] = proposal
        self._blocks.setdefault(block_hash, proposal.block)
        self._ahead.heard(proposal.proposer, proposal.round)

    def _on_vote(self, vote: Vote, verified: bool) -> None:
        body = vote.body
        power = self.power.get(vote.validator, 0)
        if body.height != self.height or body.kind not in (PREVOTE, PRECOMMIT) or power == 0:
            return
        if body.round > self.round + ROUNDS_KEPT_AHEAD:
            if verified or vote.signature_valid(self.chain_id):
                self._ahead.hold(vote.validator, vote)
            return
        tally = self._tally(body.round, body.kind)
        earlier = tally.votes_of(vote.validator)
        if body.block_hash in earlier or len(earlier) >= MAX_VOTES_PER_STEP:
            return  # a duplicate, or a cheater's noise
        if not verified and not vote.signature_valid(self.chain_id):
            return
        if earlier and (vote.validator, body.round, body.kind) not in self._evidence:
            self._evidence.add((vote.validator, body.round, body.kind))
            self._actions.append(Evidence(next(iter(earlier.values())), vote))
        tally.add(vote, power)
        self._ahead.heard(vote.validator, body.round)

    def _tally(self, round_: int, kind: int) -> VoteTally:
        tally = self._tallies.get((round_, kind))
        if tally is None:
            tally = self._tallies[(round_, kind)] = VoteTally(self.total_power)
        return tally

    # ---- the rules ----------------------------------------------------------------------

    def _run(self) -> list[Action]:
        """Fire every rule whose condition holds until none does; return the actions."""
        while self.decided is None and self._fire_one_rule():
            pass
        actions, self._actions = self._actions, []
        return actions

    def _fire_one_rule(self) -> bool:
        return (self._decide() or self._skip_round() or self._prevote_on_proposal()
                or self._prevote_timeout() or self._lock_on_polka() or self._precommit_nil()
                or self._precommit_timeout())

    def _decide(self) -> bool:  # line 49, in any round
        for (round_, kind), tally in self._tallies.items():
            if kind != PRECOMMIT:
                continue
            block_hash = next((h for h in tally.two_thirds_blocks()
                               if h != NIL_HASH and self._valid(h)), None)
            if block_hash is None:
                continue
            certificate = certificate_from_precommits(tally.votes_for(block_hash))
            self.decided = Decide(self._blocks[block_hash], certificate)
            self._actions.append(self.decided)
            return True
        return False

    def _skip_round(self) -> bool:  # line 55: f+1 of the power is already in a later round
        target = self._ahead.skip_target(self.round, self.power, self.total_power)
        if target is None:
            return False
        self._start_round(target)
        return True

    def _prevote_on_proposal(self) -> bool:  # lines 22 and 28
        if self.step != Step.PROPOSE:
            return False
        for block_hash, proposal in self._proposals.get(self.round, {}).items():
            if proposal.pol_round == NO_POL_ROUND:
                acceptable = self.locked_round == -1 or self._is_locked_on(block_hash)
            elif self._tally(proposal.pol_round, PREVOTE).has_two_thirds_for(block_hash):
                acceptable = self.locked_round <= proposal.pol_round or self._is_locked_on(block_hash)
            else:
                continue  # its proof of lock has not reached us (yet)
            self._prevote(block_hash if acceptable and self._valid(block_hash) else NIL_HASH)
            return True
        return False

    def _prevote_timeout(self) -> bool:  # line 34
        if (self.step == Step.PREVOTE and self._tally(self.round, PREVOTE).has_two_thirds_any()
                and self._first_time("prevote timeout")):
            self._schedule(Step.PREVOTE)
            return True
        return False

    def _lock_on_polka(self) -> bool:  # line 36
        if self.step == Step.PROPOSE:
            return False
        tally = self._tally(self.round, PREVOTE)
        for block_hash in self._proposals.get(self.round, {}):
            if (tally.has_two_thirds_for(block_hash) and self._valid(block_hash)
                    and self._first_time("polka")):
                block = self._blocks[block_hash]
                if self.step == Step.PREVOTE:
                    self.locked_value, self.locked_round = block, self.round
                    self._precommit(block_hash, Lock(self.round, block))
                self.valid_value, self.valid_round = block, self.round
                return True
        return False

    def _precommit_nil(self) -> bool:  # line 44
        if self.step == Step.PREVOTE and self._tally(self.round, PREVOTE).has_two_thirds_for(NIL_HASH):
            self._precommit(NIL_HASH)
            return True
        return False

    def _precommit_timeout(self) -> bool:  # line 47
        if self._tally(self.round, PRECOMMIT).has_two_thirds_any() and self._first_time("precommit timeout"):
            self._schedule(Step.PRECOMMIT)
            return True
        return False

    # ---- effects ------------------------------------------------------------------------

    def _start_round(self, round_: int) -> None:  # line 11
        self.round, self.step = round_, Step.PROPOSE
        for message in self._ahead.within(round_):  # now within reach: counted in full
            if isinstance(message, Proposal):
                self._on_proposal(message)
            else:
                self._on_vote(message, verified=True)
        if (self.key is not None and self._may_sign(Step.PROPOSE)
                and proposer_for(self.validators, self.height, round_) == self.key.public_key):
            if self.valid_value is not None:
                block, pol_round = self.valid_value, self.valid_round
            else:
                # None: the driver cannot build a block now (it lacks data to close the
                # training round); the round times out and the next proposer tries
                block, pol_round = self.build_block(self.height, round_), NO_POL_ROUND
            if block is not None:
                proposal = sign_proposal(self.key, self.chain_id, self.height, round_, pol_round, block)
                self._signed(Step.PROPOSE, proposal)
                self._on_proposal(proposal)
        # also when proposing: if our own block is refused we still move on
        self._schedule(Step.PROPOSE)

    def _prevote(self, block_hash: bytes) -> None:
        self.step = Step.PREVOTE
        self._vote(PREVOTE, block_hash)

    def _precommit(self, block_hash: bytes, lock: Lock | None = None) -> None:
        self.step = Step.PRECOMMIT
        if lock is not None and self._may_sign(Step.PRECOMMIT):
            self._actions.append(RecordLock(lock))
        self._vote(PRECOMMIT, block_hash)

    def _vote(self, kind: int, block_hash: bytes) -> None:
        if self.key is None or not self._may_sign(Step(kind)):
            return
        vote = sign_vote(self.key, self.chain_id, VoteBody(kind, self.height, self.round, block_hash))
        self._signed(Step(kind), vote)
        self._on_vote(vote, verified=True)

    def _signed(self, kind: Step, message: Proposal | Vote) -> None:
        self.last_signed = SignedStep(self.height, self.round, kind)
        self._actions += [RecordSigned(self.last_signed), Broadcast(message)]

    def _may_sign(self, kind: Step) -> bool:
        return self.last_signed is None or SignedStep(self.height, self.round, kind) > self.last_signed

    def _schedule(self, step: Step) -> None:
        self._actions.append(ScheduleTimeout(Timeout(self.height, self.round, step),
                                             self.timeouts.delay_ms(step, self.round)))

    def _first_time(self, rule: str) -> bool:
        if (rule, self.round) in self._once:
            return False
        self._once.add((rule, self.round))
        return True

    def _is_locked_on(self, block_hash: bytes) -> bool:
        return self.locked_value is not None and self.locked_value.hash == block_hash

    def _valid(self, block_hash: bytes) -> bool:
        """valid(v) of the paper: a block we hold that the application accepts at this height."""
        if block_hash not in self._validity:
            block = self._blocks.get(block_hash)
            if block is None:
                return False  # not cached: it may arrive later
            self._validity[block_hash] = (block.header.height == self.height
                                          and block.header.chain_id == self.chain_id
                                          and self.check_block(block))
        return self._validity[block_hash]
