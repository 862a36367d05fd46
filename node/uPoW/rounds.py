"""The round schedule: which heights belong to which round and phase (DESIGN.md §2).

Round r spans heights r*R+1 .. (r+1)*R, with R = round_blocks.  The block at
height r*R (the genesis, hash = genesis hash, for round 0) starts the round: its
hash seeds the work units, and the model it leaves is the one the units train.

    train      r*R+1 .. r*R+commit_blocks     work commitments for round r
    challenge  r*R+commit_blocks+1            its hash draws segments and auditors
    audit      challenge+1 .. (r+1)*R-1       audit reports and fraud proofs; in its second
                                              half, claims that challenged data is withheld
    aggregate  (r+1)*R                        the closing block: outcomes, model, rewards

The challenge block is finalized after every commitment of the round, so a miner
cannot know its challenges when it commits.
"""
from __future__ import annotations

import dataclasses

from node.types.genesis import Genesis

TRAIN, CHALLENGE, AUDIT, AGGREGATE = "train", "challenge", "audit", "aggregate"


@dataclasses.dataclass(frozen=True)
class RoundSchedule:
    round_blocks: int
    commit_blocks: int

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> "RoundSchedule":
        return cls(genesis.consensus.round_blocks, genesis.consensus.commit_blocks)

    def round_of(self, height: int) -> int:
        """The round a block at height (≥ 1) belongs to."""
        return (height - 1) // self.round_blocks

    def start_height(self, round_: int) -> int:
        """The block whose hash seeds round_'s units and whose model they start from."""
        return round_ * self.round_blocks

    def commit_deadline(self, round_: int) -> int:
        """The last height at which a commitment for round_ is accepted."""
        return round_ * self.round_blocks + self.commit_blocks

    def challenge_height(self, round_: int) -> int:
        return self.commit_deadline(round_) + 1

    def audit_window(self, round_: int) -> range:
        """Heights at which audit reports and fraud proofs for round_ are accepted."""
        return range(self.challenge_height(round_) + 1, self.close_height(round_))

    def claim_window(self, round_: int) -> range:
        """Heights at which an assigned auditor may claim a challenged blob withheld: the
        audit window's second half, so the miner had the first to serve it, and other
        auditors have the rest to fetch and re-execute it instead."""
        window = self.audit_window(round_)
        return range(window.start + len(window) // 2, window.stop)

    def delta_claim_window(self, round_: int) -> range:
        """Heights at which a committee member may claim an attested delta withheld: the
        audit window and the closing block, which counts the claims it carries."""
        window = self.audit_window(round_)
        return range(window.start, window.stop + 1)

    def close_height(self, round_: int) -> int:
        return (round_ + 1) * self.round_blocks

    def is_close(self, height: int) -> bool:
        return height > 0 and height % self.round_blocks == 0

    def phase(self, height: int) -> str:
        """The phase of the block at height (≥ 1)."""
        offset = height - self.start_height(self.round_of(height))
        if offset <= self.commit_blocks:
            return TRAIN
        if offset == self.commit_blocks + 1:
            return CHALLENGE
        if offset < self.round_blocks:
            return AUDIT
        return AGGREGATE
