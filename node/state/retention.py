"""The genesis retention window (DESIGN.md §5): how long the state keeps a round's records.

At the close of round R every node deletes the records of round R - retention_rounds
(its seed, challenge, commitments, audits, frauds, withheld and delta claims,
disputes), and, when that round ended an epoch, the epoch's work counts, which its
rotation has used.  No rule reads them after the round's close, so the state holds
the records of at most retention_rounds closed rounds and the open one, however long
the chain runs.  So does the optimizer state a unit of that round left to carry, if
its miner has not had a unit of that index accepted since: a miner that stays away
for the window starts its next unit with fresh moments, and no node keeps a departed
miner's checkpoint for ever (each one a whole training state, and one per unit of a
miner that bonded, mined once and unbonded).  Deltas, models and checkpoints of
forgotten rounds are pruned from disk by each node (node.work.blob_retention), and
old blocks by each node too (first_kept_block), not by this rule.
"""
from __future__ import annotations

from node.state.records import (AUDIT_KEY_LEN, AUDIT_PREFIX, CHALLENGE_PREFIX, COMMITMENT_KEY_LEN,
                                COMMITMENT_PREFIX, DELTA_CLAIM_KEY_LEN, DELTA_CLAIM_PREFIX, DISPUTE_KEY_LEN,
                                DISPUTE_PREFIX, FRAUD_PREFIX, ROUND_SEED_PREFIX, WITHHELD_KEY_LEN,
                                WITHHELD_PREFIX, WORK_COUNT_KEY_LEN, WORK_COUNT_PREFIX, carry_key, round_bytes,
                                split_unit_key)
from node.state.transition import Transition
from node.types.genesis import ConsensusConfig

_ROUND_KEY_LEN = 1 + 8
# every kind of record that belongs to one round: (prefix, key length)
ROUND_RECORDS = ((ROUND_SEED_PREFIX, _ROUND_KEY_LEN), (CHALLENGE_PREFIX, _ROUND_KEY_LEN),
                 (COMMITMENT_PREFIX, COMMITMENT_KEY_LEN), (AUDIT_PREFIX, AUDIT_KEY_LEN),
                 (FRAUD_PREFIX, COMMITMENT_KEY_LEN), (WITHHELD_PREFIX, WITHHELD_KEY_LEN),
                 (DELTA_CLAIM_PREFIX, DELTA_CLAIM_KEY_LEN), (DISPUTE_PREFIX, DISPUTE_KEY_LEN))


def first_kept_round(consensus: ConsensusConfig, height: int) -> int:
    """The oldest round whose records the state keeps after the block at height."""
    closed_rounds = height // consensus.round_blocks
    return max(0, closed_rounds - consensus.retention_rounds)


def first_kept_block(consensus: ConsensusConfig, height: int, snapshot_heights: list[int]) -> int:
    """The lowest height whose block a pruning node keeps after the block at height: the
    block that seeds the oldest round the state keeps (a node no further behind can still
    block-sync and replay the rounds since), or a kept snapshot's block if lower (a node
    that state-syncs from it block-syncs on from there)."""
    seed = first_kept_round(consensus, height) * consensus.round_blocks
    return max(1, min([seed, *snapshot_heights]))


def forget_old_round(t: Transition, closed_round: int) -> None:
    """At closed_round's close, delete the records of the round that leaves the window."""
    round_ = closed_round - t.consensus.retention_rounds
    if round_ < 0:
        return
    for key in t.keys(COMMITMENT_PREFIX + round_bytes(round_), COMMITMENT_KEY_LEN):
        miner, unit = split_unit_key(key)
        carry = t.carry(miner, unit)
        if carry is not None and carry.round == round_:
            t.delete(carry_key(miner, unit))
    for prefix, length in ROUND_RECORDS:
        for key in t.keys(prefix + round_bytes(round_), length):
            t.delete(key)
    if (round_ + 1) % t.consensus.epoch_rounds == 0:
        epoch = round_ // t.consensus.epoch_rounds
        for key in t.keys(WORK_COUNT_PREFIX + round_bytes(epoch), WORK_COUNT_KEY_LEN):
            t.delete(key)
