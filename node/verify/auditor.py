"""Auditing as an assigned auditor does it: full nodes and the light-audit node alike.

For each unit of a round this key is assigned to, fetch the miner's leaves (checked
against the committed Merkle root), then for each challenged segment the checkpoint
at its start, re-execute it, and compare the end state's hash with the committed
leaf, bit for bit.  A match is reported in a signed AuditReport with the leaf's
Merkle proof; a mismatch, or a start that is not a state of the unit, in a
FraudProof, which any validator confirms by re-running that one segment.  A unit
whose blobs cannot be fetched is retried until the audit window closes, and never
reported as passing.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Awaitable, Callable

from node.types.genesis import Genesis
from node.types.merkle import inclusion_proof, merkle_root
from node.storage.blobstore import BlobCorrupted, BlobNotFound, BlobStore
from node.types.transactions import AuditReport, FraudProof, WorkCommitment
from node.uPoW.assignment import assign_unit, assigned_auditors, challenged_segments
from node.uPoW.model_state import BlobFormatError
from node.uPoW.state import STATE_DOMAIN
from node.uPoW.unit_compute import SegmentReplay
from node.uPoW.work import decode_leaves

log = logging.getLogger("uponode.audit")

Fetch = Callable[[bytes], Awaitable[bool]]  # make a blob present in the local store
Replay = Callable[[bytes, int, int, bytes, bytes], Awaitable[SegmentReplay]]
Submit = Callable[[object], None]  # sign and send a payload


@dataclasses.dataclass(frozen=True)
class AuditTask:
    round: int
    miner: bytes
    unit: int
    commitment: WorkCommitment
    data_seed: int
    segments: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"round {self.round} unit {self.miner.hex()[:8]}/{self.unit}"


def assigned_tasks(genesis: Genesis, me: bytes, round_: int, round_start_hash: bytes,
                   challenge_hash: bytes, eligible: list[bytes],
                   commitments: list[tuple[bytes, int, WorkCommitment]]) -> list[AuditTask]:
    """The units of round_ that me must audit, with their challenged segments."""
    training = genesis.training
    tasks = []
    for miner, unit, commitment in commitments:
        auditors = assigned_auditors(challenge_hash, miner, unit, eligible,
                                     training.auditors_per_unit)
        if me in auditors:
            tasks.append(AuditTask(
                round_, miner, unit, commitment,
                assign_unit(round_start_hash, miner, unit).data_seed,
                challenged_segments(challenge_hash, miner, unit, training.segments,
                                    training.audit_segments)))
    return tasks


class Auditor:
    def __init__(self, genesis: Genesis, blobs: BlobStore, fetch: Fetch, replay: Replay,
                 submit: Submit):
        self.genesis = genesis
        self.blobs = blobs
        self.fetch = fetch
        self.replay = replay
        self.submit = submit
        self.done: set[tuple[int, bytes, int]] = set()  # (round, miner, unit) reported

    async def audit(self, task: AuditTask) -> bool:
        """Audit one unit; True once it is reported (pass or fraud), False to retry later."""
        key = (task.round, task.miner, task.unit)
        if key in self.done:
            return True
        leaves = await self._leaves(task)
        if leaves is None or not await self.fetch(task.commitment.start_root):
            return False
        reports = []
        for segment in task.segments:
            if not await self.fetch(leaves[segment]):
                log.info("%s: checkpoint %d is not available yet", task.name, segment)
                return False
            result = await self.replay(task.commitment.start_root, task.data_seed, segment,
                                       leaves[segment], task.commitment.delta_hash)
            fraud = self._fraud(task, leaves, segment, result)
            if fraud is not None:
                log.warning("%s: segment %d FAILS (%s) in %.2f s: submitting a fraud proof",
                            task.name, segment, fraud[1], result.seconds)
                self.submit(fraud[0])
                self.done.add(key)
                return True
            log.info("%s: segment %d re-executed bit-exactly in %.2f s", task.name, segment,
                     result.seconds)
            reports.append(AuditReport(
                round=task.round, miner=task.miner, unit=task.unit, segment=segment,
                result_hash=result.end_hash, result_proof=tuple(inclusion_proof(leaves, segment + 1))))
        for report in reports:
            self.submit(report)
        self.done.add(key)
        return True

    async def _leaves(self, task: AuditTask) -> list[bytes] | None:
        c = task.commitment
        if not await self.fetch(c.leaves_hash):
            log.info("%s: leaves are not available yet", task.name)
            return None
        try:
            leaves = decode_leaves(self.blobs.get(c.leaves_hash.hex()))
        except BlobFormatError as exc:
            log.warning("%s: the leaves blob is malformed: %s", task.name, exc)
            return None
        if len(leaves) != c.checkpoint_count or merkle_root(leaves) != c.checkpoint_root:
            log.warning("%s: the leaves do not match the committed Merkle root", task.name)
            return None
        return leaves

    def _fraud(self, task: AuditTask, leaves: list[bytes], segment: int,
               result: SegmentReplay) -> tuple[FraudProof, str] | None:
        c = task.commitment
        base = dict(round=task.round, miner=task.miner, unit=task.unit,
                    start_hash=leaves[segment], start_proof=tuple(inclusion_proof(leaves, segment)))
        if result.invalid_start is not None or result.end_hash != leaves[segment + 1]:
            why = result.invalid_start or "the end state differs from the committed leaf"
            # a start that is not a state of the unit has no end state to show
            computed = result.end_hash if result.end_hash is not None else bytes(32)
            return FraudProof(segment=segment, claimed_end_hash=leaves[segment + 1],
                              end_proof=tuple(inclusion_proof(leaves, segment + 1)),
                              computed_end_hash=computed, **base), why
        if result.delta_hash is not None and result.delta_hash != c.delta_hash:
            last = self.genesis.training.segments
            return FraudProof(round=task.round, miner=task.miner, unit=task.unit, segment=last,
                              start_hash=leaves[last], start_proof=tuple(inclusion_proof(leaves, last)),
                              claimed_end_hash=c.delta_hash, end_proof=(),
                              computed_end_hash=result.delta_hash), "the delta does not follow from the last checkpoint"
        return None


def prune_checkpoints(store: BlobStore, commitments: list[WorkCommitment],
                      keep: dict[bytes, tuple[int, ...]]) -> int:
    """Delete the stored checkpoints of commitments, except the leaf indices keep names
    per leaves hash; returns how many were deleted.

    A leaves file is the miner's word: it is trusted only where it matches its
    commitment (count and Merkle root), and only blobs that are training states are
    deleted, so a miner cannot list others' deltas or models for every pruning node to
    delete, nor a checkpoint that another unit's fraud record keeps."""
    named: set[bytes] = set()
    kept: set[bytes] = set()
    for commitment in commitments:
        try:
            leaves = decode_leaves(store.get(commitment.leaves_hash.hex()))
        except (BlobNotFound, BlobCorrupted, BlobFormatError):
            continue
        if (len(leaves) != commitment.checkpoint_count
                or merkle_root(leaves) != commitment.checkpoint_root):
            continue
        named.update(leaves)
        kept.update(leaves[i] for i in keep.get(commitment.leaves_hash, ()) if i < len(leaves))
    removed = 0
    for leaf in sorted(named - kept):
        if _is_checkpoint(store, leaf):
            store.delete(leaf.hex())
            removed += 1
    return removed


def _is_checkpoint(store: BlobStore, digest: bytes) -> bool:
    try:
        return store.get(digest.hex()).startswith(STATE_DOMAIN)
    except (BlobNotFound, BlobCorrupted):
        return False
