"""What a node re-gossips at one height: the proposals and votes it holds, and which of
them each peer is known to have.

A message sent once can be lost: it left before the peer's connection came up, or on
a connection that a newer one replaced.  As Tendermint's vote gossip does, the driver
keeps the current height's proposals and votes and sends each peer those it lacks,
on connect and periodically, so that liveness never rests on a single delivery.  A
peer "has" a message we sent it or received from it on its current connection; a new
connection forgets that, since the peer may have restarted.

Memory is bounded per height (the book is dropped when the height changes): per round,
only what the consensus core itself would count: up to MAX_VOTES_PER_STEP proposals
from the round's proposer and votes per (validator, round, kind), and no round more
than one ahead of the core's.
"""
from __future__ import annotations

import enum
from typing import Iterable, Sequence

from node.consensus.messages import height_of
from node.consensus.proposer import proposer_for
from node.consensus.rounds_ahead import ROUNDS_KEPT_AHEAD
from node.consensus.tally import MAX_VOTES_PER_STEP
from node.types.crypto import sha256
from node.types.proposal import Proposal
from node.types.votes import PRECOMMIT, PREVOTE, Vote


class Intake(enum.Enum):
    KEPT = "kept"  # new, and kept to re-gossip
    NOT_KEPT = "not kept"  # new, but not for re-gossip (the core may still count it)
    COPY = "copy"  # already kept
    FOREIGN = "foreign"  # of this height, but no one with a say in it signed it


class HeightGossip:
    def __init__(self, height: int, validators: Sequence[tuple[bytes, int]]):
        self.height = height
        self.validators = tuple(validators)
        self._members = {key for key, _ in self.validators}
        self._messages: dict[bytes, Proposal | Vote] = {}  # id -> message, in arrival order
        self._slots: dict[tuple, int] = {}  # (signer, round, kind) -> messages kept for it
        self._peers: dict[bytes, set[bytes]] = {}  # peer -> ids it is known to have

    def add(self, message: Proposal | Vote, current_round: int, sender: bytes | None = None) -> Intake:
        """Keep a signature-checked message of this height if the core would count it
        and its round is not too far ahead; sender (the peer it came from) has it."""
        message_id = _message_id(message)
        if message_id in self._messages:
            self._mark(sender, message_id)
            return Intake.COPY
        slot = self._slot(message)
        if slot is None:
            return Intake.FOREIGN if height_of(message) == self.height else Intake.NOT_KEPT
        if (slot[1] > current_round + ROUNDS_KEPT_AHEAD
                or self._slots.get(slot, 0) >= MAX_VOTES_PER_STEP):
            return Intake.NOT_KEPT
        self._slots[slot] = self._slots.get(slot, 0) + 1
        self._messages[message_id] = message
        self._mark(sender, message_id)
        return Intake.KEPT

    def connected(self, peer: bytes) -> None:
        """A new connection to peer: it may have lost everything (a restart)."""
        self._peers[peer] = set()

    def keep_only(self, peers: Iterable[bytes]) -> None:
        """Forget peers no longer connected."""
        connected = list(peers)
        for peer in [p for p in self._peers if p not in connected]:
            del self._peers[peer]
        for peer in connected:
            self._peers.setdefault(peer, set())

    def lacking(self, peer: bytes) -> list[Proposal | Vote]:
        """The kept messages peer is not known to have, marked as sent to it now."""
        has = self._peers.setdefault(peer, set())
        missing = [(i, m) for i, m in self._messages.items() if i not in has]
        has.update(i for i, _ in missing)
        return [m for _, m in missing]

    def _mark(self, peer: bytes | None, message_id: bytes) -> None:
        if peer is not None:
            self._peers.setdefault(peer, set()).add(message_id)

    def _slot(self, message: Proposal | Vote) -> tuple | None:
        """(signer, round, kind) of a message the core would count at this height, or None."""
        if isinstance(message, Proposal):
            if (message.height != self.height
                    or message.proposer != proposer_for(self.validators, self.height, message.round)):
                return None
            return message.proposer, message.round, "proposal"
        body = message.body
        if (body.height != self.height or body.kind not in (PREVOTE, PRECOMMIT)
                or message.validator not in self._members):
            return None
        return message.validator, body.round, body.kind


def _message_id(message: Proposal | Vote) -> bytes:
    """A vote's (checked) signature names it: the signature covers its body, and its
    beacon, though unsigned, verifies only under the signer's key, with an output fixed
    by key and height.  A proposal's signature covers its block's hash, not the block's
    bytes, so the whole message is hashed."""
    return message.signature if isinstance(message, Vote) else sha256(message.encode())
