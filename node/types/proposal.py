"""Consensus messages besides votes (node.types.votes.Vote): the signed block proposal."""
from __future__ import annotations

import dataclasses

from node.types import crypto
from node.types.blocks import Block
from node.types.codec import HASH, PUBKEY, SIGNATURE, U32, U64, Nested, Record

PROPOSAL_DOMAIN = "proposal"
NO_POL_ROUND = 0xFFFFFFFF  # the proposal re-proposes no earlier valid block


@dataclasses.dataclass(frozen=True)
class ProposalBody(Record):
    """What a proposer signs: the block by its hash, not its bytes."""
    height: int
    round: int
    pol_round: int  # the round of the proof of lock the block comes with, or NO_POL_ROUND
    block_hash: bytes
    SCHEMA = (("height", U64), ("round", U32), ("pol_round", U32), ("block_hash", HASH))


@dataclasses.dataclass(frozen=True)
class Proposal(Record):
    height: int
    round: int
    pol_round: int
    block: Block
    proposer: bytes
    signature: bytes
    SCHEMA = (("height", U64), ("round", U32), ("pol_round", U32), ("block", Nested(Block)),
              ("proposer", PUBKEY), ("signature", SIGNATURE))

    def body(self) -> ProposalBody:
        return ProposalBody(self.height, self.round, self.pol_round, self.block.hash)

    def signature_valid(self, chain_id: str) -> bool:
        return crypto.verify(self.proposer, self.signature, PROPOSAL_DOMAIN, chain_id,
                             self.body().encode())


def sign_proposal(key: crypto.SigningKey, chain_id: str, height: int, round_: int,
                  pol_round: int, block: Block) -> Proposal:
    body = ProposalBody(height, round_, pol_round, block.hash)
    return Proposal(height, round_, pol_round, block, key.public_key,
                    key.sign(PROPOSAL_DOMAIN, chain_id, body.encode()))
