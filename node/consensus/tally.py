"""The votes of one kind (prevote or precommit) in one round, tallied by voting power.

As in the paper, a threshold for a block counts every validator that voted for it, so a
validator that voted for two blocks counts toward both: that cannot break safety (two
quorums still share a correct validator), and it keeps honest nodes from seeing different
quorums depending on which of a cheater's votes reached them first.  "Any" thresholds count
each validator once.
"""
from __future__ import annotations

from node.types.votes import Vote

# Votes of one validator for different blocks in one step that are counted; all but the first
# are misbehaviour, and the cap bounds what a cheater can make us store.
MAX_VOTES_PER_STEP = 4


class VoteTally:
    def __init__(self, total_power: int):
        self.total_power = total_power
        self.votes: dict[bytes, dict[bytes, Vote]] = {}  # validator -> block hash -> vote
        self.power_for: dict[bytes, int] = {}  # block hash (NIL_HASH for nil) -> power
        self.power_any = 0

    def votes_of(self, validator: bytes) -> dict[bytes, Vote]:
        return self.votes.get(validator, {})

    def add(self, vote: Vote, power: int) -> None:
        """Count a verified vote for a block this validator has not voted for here yet."""
        by_hash = self.votes.setdefault(vote.validator, {})
        if not by_hash:
            self.power_any += power
        block_hash = vote.body.block_hash
        by_hash[block_hash] = vote
        self.power_for[block_hash] = self.power_for.get(block_hash, 0) + power

    def has_two_thirds_for(self, block_hash: bytes) -> bool:
        return 3 * self.power_for.get(block_hash, 0) > 2 * self.total_power

    def has_two_thirds_any(self) -> bool:
        return 3 * self.power_any > 2 * self.total_power

    def two_thirds_blocks(self) -> list[bytes]:
        """The hashes (maybe NIL_HASH) voted for by more than 2/3 of the power."""
        return [h for h in self.power_for if self.has_two_thirds_for(h)]

    def votes_for(self, block_hash: bytes) -> list[Vote]:
        return [by_hash[block_hash] for by_hash in self.votes.values() if block_hash in by_hash]
