"""Commit certificates: a block is final with precommits from more than 2/3 of the
committee's voting power."""
from __future__ import annotations

from node.types.blocks import CommitCertificate
from node.types.votes import VOTE_DOMAIN
from node.types.crypto import verify
from typing import Protocol


class VotingPower(Protocol):
    """The committee a commit is checked against (the state's Committee record)."""

    total_power: int

    def power_of(self, pub_key: bytes) -> int: ...


class InvalidCommit(Exception):
    """A commit certificate that does not prove finality; the message says why."""


def verify_commit(commit: CommitCertificate, committee: VotingPower, chain_id: str,
                  height: int, block_hash: bytes) -> None:
    """Raise InvalidCommit unless commit finalizes block_hash at height under committee."""
    if commit.height != height or commit.block_hash != block_hash:
        raise InvalidCommit(f"the commit is for height {commit.height}, not for this block at {height}")
    signed_bytes = commit.vote_body().encode()
    seen: set[bytes] = set()
    power = 0
    for sig in commit.signatures:
        if sig.validator in seen:
            raise InvalidCommit("a validator signs the commit twice")
        seen.add(sig.validator)
        member_power = committee.power_of(sig.validator)
        if member_power == 0:
            raise InvalidCommit(f"signer {sig.validator.hex()[:16]} is not in the committee")
        if not verify(sig.validator, sig.signature, VOTE_DOMAIN, chain_id, signed_bytes):
            raise InvalidCommit(f"signer {sig.validator.hex()[:16]}'s precommit does not verify")
        power += member_power
    if 3 * power <= 2 * committee.total_power:
        raise InvalidCommit(f"precommits hold {power} of {committee.total_power} voting power, "
                            f"not more than 2/3")
