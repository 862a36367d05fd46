"""The consensus driver: one height after another, as a sans-I/O state machine.

The core (node.consensus.core) decides one height; the driver runs a core per height
over the chain, and is what a node and the simulator (tests/sim) both run.  Events in:

  start()                  begin at the height after the chain's head (also after a restart)
  receive(peer, message)   a proposal or vote from a peer; ForgedMessage if its signature fails
  on_timer(timer)          a timer asked for by SetTimer has fired
  peer_connected(peer)     a new connection to peer (it may have lost all it had)
  tick(peers)              periodically, with the peers connected now
  synced()                 block sync has moved the chain's head

Actions out, to carry out in order: Send (one message to one peer), SetTimer,
Finalized (a block decided here is on the chain) and the core's Evidence.

What the driver adds to the core: the double-sign guard's synced record before a
signed message leaves; re-sending what it signed at the height after a restart (the
core never signs those steps again); a buffer of messages for heights not reached yet; a
pause of the block interval between heights; and re-gossip (node.consensus.gossip) of
the height's proposals and votes to every peer that lacks them.
"""
from __future__ import annotations

import dataclasses
from typing import Collection, Protocol, Sequence

from node.consensus.core import (Broadcast, ConsensusCore, Decide, Evidence, Lock, RecordLock,
                                 RecordSigned, ScheduleTimeout, SignedStep, Step, Timeout,
                                 TimeoutConfig)
from node.consensus.gossip import HeightGossip, Intake
from node.consensus.messages import height_of, signer_of
from node.consensus.pending import PendingMessages
from node.net.wire import decode_message, encode_message
from node.types.blocks import Block, CommitCertificate
from node.types.crypto import SigningKey
from node.types.proposal import Proposal
from node.types.votes import Vote


class ChainView(Protocol):
    """The chain as consensus needs it (node.state.consensus_chain.ConsensusChain)."""

    @property
    def height(self) -> int:
        """The finalized head's height."""

    def validators(self) -> Sequence[tuple[bytes, int]]:
        """(public key, power) of the committee deciding the next height, in its order."""

    def build_block(self, height: int, round_: int) -> Block | None:
        """A block to propose as the next one, or None if this node cannot build one yet."""

    def check_block(self, block: Block) -> bool:
        """Whether block is valid as the next one (False also for "cannot tell yet")."""

    def finalize(self, block: Block, certificate: CommitCertificate) -> bool:
        """Store the decided block; False if it must wait (it then arrives by block sync)."""


class SignRecord(Protocol):
    """The persisted last signed step, what was signed at its height, and the lock
    (node.consensus.guard.SignGuard)."""

    def load(self) -> tuple[int, int, int, bytes] | None: ...

    def signed_at(self, height: int) -> list[bytes]: ...

    def load_lock(self) -> tuple[int, bytes] | None: ...

    def record(self, height: int, round_: int, kind: int, message: bytes) -> None: ...

    def record_lock(self, round_: int, block: bytes) -> None: ...


class ForgedMessage(Exception):
    """A proposal or vote whose signature does not verify, or one of the height being
    decided that no member of its committee could have sent (a vote from outside it, a
    proposal from another than the round's proposer): no honest peer sends or relays one."""


@dataclasses.dataclass(frozen=True)
class NextHeight:
    """Start this height (the block interval after the last one was decided)."""
    height: int


@dataclasses.dataclass(frozen=True)
class Send:
    peer: bytes
    message: Proposal | Vote


@dataclasses.dataclass(frozen=True)
class SetTimer:
    """Call on_timer(timer) after delay_ms."""
    timer: Timeout | NextHeight
    delay_ms: int


@dataclasses.dataclass(frozen=True)
class Finalized:
    """A block decided here is now the chain's head."""
    block: Block


DriverAction = Send | SetTimer | Finalized | Evidence


class ConsensusDriver:
    def __init__(self, chain_id: str, key: SigningKey, chain: ChainView, guard: SignRecord,
                 timeouts: TimeoutConfig, block_interval_ms: int):
        self.chain_id = chain_id
        self.key = key
        self.chain = chain
        self.guard = guard
        self.timeouts = timeouts
        self.block_interval_ms = block_interval_ms
        self.core: ConsensusCore | None = None  # None between heights
        self.gossip = HeightGossip(0, ())
        self.pending = PendingMessages()  # for the next height
        self.peers: dict[bytes, None] = {}  # connected; ordered, so a run repeats exactly
        self._actions: list[DriverAction] = []

    def held_messages(self) -> int:
        """Proposals and votes held for this height and the next: bounded whatever peers send."""
        return (self.core.held_messages() if self.core is not None else 0) + len(self.pending)

    @property
    def consensus_round(self) -> int | None:
        """The Tendermint round of the height being decided (not the training round)."""
        return self.core.round if self.core is not None else None

    # ---- events -------------------------------------------------------------------------

    def start(self) -> list[DriverAction]:
        self._enter_height(self.chain.height + 1)
        return self._flush()

    def receive(self, peer: bytes, message: Proposal | Vote) -> list[DriverAction]:
        if not message.signature_valid(self.chain_id):
            raise ForgedMessage(f"{type(message).__name__} with a bad signature")
        if self._deliver(message, peer) is Intake.FOREIGN:
            raise ForgedMessage(f"{type(message).__name__} of height {height_of(message)} "
                                f"signed by {signer_of(message).hex()[:16]}, who has no say in it")
        return self._flush()

    def on_timer(self, timer: Timeout | NextHeight) -> list[DriverAction]:
        if isinstance(timer, NextHeight):
            if self.core is None and timer.height == self.chain.height + 1:
                self._enter_height(timer.height)
        elif self.core is not None and timer.height == self.core.height:
            self._process(self.core.on_timeout(timer))
        return self._flush()

    def peer_connected(self, peer: bytes) -> list[DriverAction]:
        self.peers[peer] = None
        self.gossip.connected(peer)
        self._send_lacking(peer)
        return self._flush()

    def tick(self, peers: Collection[bytes]) -> list[DriverAction]:
        """Send every connected peer what it lacks (what arrived since, or what a
        message lost on a replaced connection left it without)."""
        self.peers = dict.fromkeys(peers)
        self.gossip.keep_only(self.peers)
        for peer in self.peers:
            self._send_lacking(peer)
        return self._flush()

    def synced(self) -> list[DriverAction]:
        """The chain's head moved by block sync: join consensus after it."""
        height = self.chain.height + 1
        if self.core is None or self.core.height < height:
            self._enter_height(height)
        return self._flush()

    # ---- heights --------------------------------------------------------------------------

    def _enter_height(self, height: int) -> None:
        validators = tuple(self.chain.validators())
        seated = any(k == self.key.public_key for k, _ in validators)
        last = self.guard.load()
        lock = self.guard.load_lock()
        self.gossip = HeightGossip(height, validators)
        self.gossip.keep_only(self.peers)
        self.core = ConsensusCore(
            chain_id=self.chain_id, height=height, validators=validators,
            key=self.key if seated else None, timeouts=self.timeouts,
            build_block=self.chain.build_block, check_block=self.chain.check_block,
            last_signed=SignedStep(last[0], last[1], Step(last[2])) if last is not None else None,
            lock=Lock(lock[0], Block.decode(lock[1])) if lock is not None else None)
        self._process(self.core.start())
        # a restart within this height: what we signed may never have left the process,
        # and the core will not sign those steps again, so they are sent again
        for frame in self.guard.signed_at(height):
            if self.core is not None:
                message = decode_message(frame)
                self._process(self.core.receive(message))
                self._gossip_own(message)
        for message in self.pending.take():
            self._deliver(message, sender=None)  # its sender's connection may be gone

    def _deliver(self, message: Proposal | Vote, sender: bytes | None) -> Intake | None:
        """Hand a checked message to the core or hold it for the next height; the gossip
        book's verdict on it, None if it is not of the height being decided."""
        height = height_of(message)
        if self.core is not None and height == self.core.height:
            intake = self.gossip.add(message, self.core.round, sender)
            if intake is Intake.KEPT:
                self._relay()
            if intake in (Intake.KEPT, Intake.NOT_KEPT):  # new: a round far ahead still counts toward a skip
                self._process(self.core.receive(message))
            return intake
        if (self.chain.height < height <= self.chain.height + 2
                and (self.core is None or height > self.core.height)):
            # the next height only: a node further behind catches up by block sync, and
            # a far-future message cannot push the next height's out of the buffer
            self.pending.add(message)
        return None

    def _decide(self, block: Block, certificate: CommitCertificate) -> None:
        if not self.chain.finalize(block, certificate):
            return  # the core stays decided; the block comes again by block sync
        self.core = None
        self._actions.append(Finalized(block))
        # the next height starts after the block interval, as Tendermint's timeout_commit
        self._actions.append(SetTimer(NextHeight(self.chain.height + 1), self.block_interval_ms))

    # ---- the core's actions ---------------------------------------------------------------

    def _process(self, actions: list) -> None:
        for index, action in enumerate(actions):
            if isinstance(action, RecordSigned):
                # the signed message is the Broadcast that follows; it is written with
                # the step, synced, before it leaves
                message = next(a.message for a in actions[index:] if isinstance(a, Broadcast))
                step = action.step
                self.guard.record(step.height, step.round, step.kind, encode_message(message))
            elif isinstance(action, RecordLock):
                self.guard.record_lock(action.lock.round, action.lock.block.encode())
            elif isinstance(action, Broadcast):
                self._gossip_own(action.message)
            elif isinstance(action, ScheduleTimeout):
                self._actions.append(SetTimer(action.timeout, action.delay_ms))
            elif isinstance(action, Decide):
                self._decide(action.block, action.certificate)
                return  # the core of this height is done
            elif isinstance(action, Evidence):
                self._actions.append(action)

    # ---- gossip ---------------------------------------------------------------------------

    def _gossip_own(self, message: Proposal | Vote) -> None:
        if self.core is not None and self.gossip.add(message, self.core.round) is Intake.KEPT:
            self._relay()

    def _relay(self) -> None:
        """Send what just arrived (or was signed) to every peer that lacks it."""
        for peer in self.peers:
            self._send_lacking(peer)

    def _send_lacking(self, peer: bytes) -> None:
        self._actions += [Send(peer, message) for message in self.gossip.lacking(peer)]

    def _flush(self) -> list[DriverAction]:
        actions, self._actions = self._actions, []
        return actions
