"""Deleting the blobs of a round that left the retention window (DESIGN.md §5).

The close of round R forgets the records of round R - retention_rounds
(node.state.retention).  A node that is not an archive then deletes what only that
round needed: its units' deltas and leaves files (and any checkpoints still there),
and the model its units trained from.  Every digest is a miner's word, so a blob is
deleted only if it is of the kind named (node.verify.auditor.prune_unit_blobs) and no
kept round still names it: a commitment cannot make nodes delete the current model, a
snapshot's chunk, or another unit's delta.
"""
from __future__ import annotations

import logging

from node.state.chain import Chain
from node.state.records import COMMITMENT_KEY_LEN, COMMITMENT_PREFIX
from node.storage.blobstore import BlobStore
from node.types.transactions import NO_CARRY, WorkCommitment
from node.uPoW.rounds import RoundSchedule
from node.verify.auditor import prune_unit_blobs

log = logging.getLogger("uponode.retention")


def prune_forgotten_round(chain: Chain, blobs: BlobStore) -> int:
    """After the block at chain's head: if it closed a round and forgot an old one,
    delete that round's blobs; returns how many were deleted."""
    schedule = RoundSchedule.from_genesis(chain.genesis)
    height = chain.height
    if not schedule.is_close(height):
        return 0
    forgotten_round = schedule.round_of(height) - chain.genesis.consensus.retention_rounds
    commitments = [WorkCommitment.decode(v) for k, v in chain.forgotten.items()
                   if k[:1] == COMMITMENT_PREFIX and len(k) == COMMITMENT_KEY_LEN]
    if forgotten_round < 0 or not commitments:
        return 0
    removed = prune_unit_blobs(blobs, commitments, _named_by_kept_rounds(chain, schedule, forgotten_round))
    if removed:
        log.info("round %d left the retention window: deleted %d of its blobs", forgotten_round, removed)
    return removed


def _named_by_kept_rounds(chain: Chain, schedule: RoundSchedule, forgotten_round: int) -> set[bytes]:
    """Every digest the kept rounds still need: their units' deltas, leaves and start
    models, every model made since the forgotten round (a kept round's start, or a kept
    snapshot's model), the current model, every checkpoint a kept unit carried and every
    one a miner's next unit may still carry."""
    state = chain.state
    kept = {state.model().root} | state.carried_leaves()
    for round_ in range(forgotten_round, schedule.round_of(chain.height) + 1):
        for _, _, c in state.round_commitments(round_):
            kept.update((c.delta_hash, c.leaves_hash, c.start_root))
            if c.carried_leaf != NO_CARRY:  # the start of its segment 0, which a fraud proof replays
                kept.add(c.carried_leaf)
        block = chain.block(schedule.close_height(round_))
        kept.update(close.model_root for close in (block.close if block is not None else ()))
    return kept
