"""The two consensus messages, and what every layer asks of either: its height, round and signer."""
from __future__ import annotations

from node.types.proposal import Proposal
from node.types.votes import Vote

ConsensusMessage = Proposal | Vote


def height_of(message: ConsensusMessage) -> int:
    return message.height if isinstance(message, Proposal) else message.body.height


def round_of(message: ConsensusMessage) -> int:
    return message.round if isinstance(message, Proposal) else message.body.round


def signer_of(message: ConsensusMessage) -> bytes:
    return message.proposer if isinstance(message, Proposal) else message.validator
