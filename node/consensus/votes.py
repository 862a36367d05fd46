"""The votes of one kind (prevote or precommit) in one round, tallied by voting power."""
from __future__ import annotations

from node.blocks import Vote


class VoteTally:
    """Each validator's first vote counts; a later different one is kept only as evidence."""

    def __init__(self, total_power: int):
        self.total_power = total_power
        self.votes: dict[bytes, Vote] = {}
        self.power_for: dict[bytes, int] = {}  # block hash (NIL_HASH for nil) -> power
        self.power_any = 0

    def first_vote_of(self, validator: bytes) -> Vote | None:
        return self.votes.get(validator)

    def add(self, vote: Vote, power: int) -> None:
        """Count a verified vote from a validator that has not voted here yet."""
        self.votes[vote.validator] = vote
        block_hash = vote.body.block_hash
        self.power_for[block_hash] = self.power_for.get(block_hash, 0) + power
        self.power_any += power

    def has_two_thirds_for(self, block_hash: bytes) -> bool:
        return 3 * self.power_for.get(block_hash, 0) > 2 * self.total_power

    def has_two_thirds_any(self) -> bool:
        return 3 * self.power_any > 2 * self.total_power

    def two_thirds_block(self) -> bytes | None:
        """The hash (maybe NIL_HASH) holding more than 2/3 of the power, if any."""
        return next((h for h in self.power_for if self.has_two_thirds_for(h)), None)

    def votes_for(self, block_hash: bytes) -> list[Vote]:
        return [v for v in self.votes.values() if v.body.block_hash == block_hash]
