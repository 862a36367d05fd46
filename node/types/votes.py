"""Votes: what a validator signs at the prevote and precommit steps of consensus."""
from __future__ import annotations

import dataclasses

from node.types import crypto
from node.types.codec import HASH, PUBKEY, SIGNATURE, U8, U32, U64, Nested, Record

VOTE_DOMAIN = "vote"
PREVOTE = 1
PRECOMMIT = 2
NIL_HASH = bytes(32)  # a vote for no block


@dataclasses.dataclass(frozen=True)
class VoteBody(Record):
    """What a validator signs when it votes."""
    kind: int  # PREVOTE or PRECOMMIT
    height: int
    round: int
    block_hash: bytes  # NIL_HASH for nil
    SCHEMA = (("kind", U8), ("height", U64), ("round", U32), ("block_hash", HASH))


@dataclasses.dataclass(frozen=True)
class Vote(Record):
    body: VoteBody
    validator: bytes
    signature: bytes
    SCHEMA = (("body", Nested(VoteBody)), ("validator", PUBKEY), ("signature", SIGNATURE))

    def signature_valid(self, chain_id: str) -> bool:
        return crypto.verify(self.validator, self.signature, VOTE_DOMAIN, chain_id,
                             self.body.encode())


def sign_vote(key: crypto.SigningKey, chain_id: str, body: VoteBody) -> Vote:
    return Vote(body=body, validator=key.public_key,
                signature=key.sign(VOTE_DOMAIN, chain_id, body.encode()))
