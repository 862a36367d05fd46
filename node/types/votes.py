"""Votes: what a validator signs at the prevote and precommit steps of consensus.

A precommit for a block also carries the validator's beacon for that height: a VRF proof
(node.types.vrf) over (chain id, height).  Its output is unique to the key and the
height, whatever block or round the precommit is for, and no one else can compute it
before the validator reveals it; so the commits that carry precommits are randomness
that nothing in a block can steer (node.uPoW.assignment.chooser_seed).  Prevotes and
nil precommits carry none.
"""
from __future__ import annotations

import dataclasses

from node.types import crypto, vrf
from node.types.codec import HASH, PUBKEY, SIGNATURE, U8, U32, U64, Nested, Record, VarBytes

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
    beacon: bytes = b""  # a VRF proof in a precommit for a block, else empty
    SCHEMA = (("body", Nested(VoteBody)), ("validator", PUBKEY), ("signature", SIGNATURE),
              ("beacon", VarBytes(vrf.PROOF_SIZE)))

    def signature_valid(self, chain_id: str) -> bool:
        """The signature verifies, and the beacon is there and verifies exactly when the
        vote is a precommit for a block."""
        if not crypto.verify(self.validator, self.signature, VOTE_DOMAIN, chain_id, self.body.encode()):
            return False
        if not carries_beacon(self.body):
            return self.beacon == b""
        return beacon_output(chain_id, self.body.height, self.validator, self.beacon) is not None


def carries_beacon(body: VoteBody) -> bool:
    return body.kind == PRECOMMIT and body.block_hash != NIL_HASH


def beacon_input(chain_id: str, height: int) -> bytes:
    """What a precommit's beacon is computed over: the height alone, neither the block nor
    the consensus round, so a validator has one beacon per height and no proposer can
    change it by what it puts in a block."""
    return crypto.signing_bytes("beacon", chain_id, height.to_bytes(8, "big"))


def beacon_output(chain_id: str, height: int, validator: bytes, beacon: bytes) -> bytes | None:
    """The validator's beacon output for height, or None if beacon does not prove it."""
    return vrf.verified_output(validator, beacon_input(chain_id, height), beacon)


def sign_vote(key: crypto.SigningKey, chain_id: str, body: VoteBody) -> Vote:
    beacon = (vrf.prove(key.seed, beacon_input(chain_id, body.height))
              if carries_beacon(body) else b"")
    return Vote(body=body, validator=key.public_key,
                signature=key.sign(VOTE_DOMAIN, chain_id, body.encode()), beacon=beacon)
