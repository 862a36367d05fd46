"""Commit certificates: a block is final with precommits from more than 2/3 of the
committee's voting power.

A certificate is as canonical as the rules can make it: its signers are committee
members in strictly ascending key order (so none twice), each precommit's signature
and beacon verify.  What stays free is which quorum of the precommits it carries:
the next proposer picks that subset (docs/security.md, challenge randomness).
"""
from __future__ import annotations

from node.types.blocks import CommitCertificate
from node.types.votes import VOTE_DOMAIN, beacon_output
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
    previous = b""
    power = 0
    for sig in commit.signatures:
        if sig.validator <= previous:
            raise InvalidCommit("the signers are not in strictly ascending key order "
                                "(a validator signs twice, or the order is not canonical)")
        previous = sig.validator
        member_power = committee.power_of(sig.validator)
        if member_power == 0:
            raise InvalidCommit(f"signer {sig.validator.hex()[:16]} is not in the committee")
        if not verify(sig.validator, sig.signature, VOTE_DOMAIN, chain_id, signed_bytes):
            raise InvalidCommit(f"signer {sig.validator.hex()[:16]}'s precommit does not verify")
        if beacon_output(chain_id, height, sig.validator, sig.beacon) is None:
            raise InvalidCommit(f"signer {sig.validator.hex()[:16]}'s beacon does not verify")
        power += member_power
    if 3 * power <= 2 * committee.total_power:
        raise InvalidCommit(f"precommits hold {power} of {committee.total_power} voting power, "
                            f"not more than 2/3")
