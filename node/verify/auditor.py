"""Auditing as an assigned auditor does it: full nodes and the light-audit node alike.

For each unit of a round this key is assigned to, fetch the miner's leaves (checked
against the committed Merkle root), then for each challenged segment the checkpoint
at its start, re-execute it, and compare the end state's hash with the committed
leaf, bit for bit.  A match is reported in a signed AuditReport with the leaf's
Merkle proof and the evidence of the replay (node/uPoW/evidence.py) bound to this
auditor's key; a mismatch, or a start that is not a state of the unit, in a
FraudProof, which any validator confirms by re-running that one segment.  A unit
whose blobs cannot be fetched is retried until the audit window closes, and never
reported as passing; in the claim window an assigned auditor claims it withheld,
which slashes the miner unless another auditor, fetching it after all, reports it
passing.  The last segment's report also attests that the delta was fetched.  A
segment that replays to its leaf but not to the miner's evidence lock is not passed:
the miner locked a digest no replay gives, and the unit goes unpaid.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Awaitable, Callable, Sequence

from node.state.records import ChallengeRecord
from node.types.genesis import Genesis
from node.types.merkle import inclusion_proof, merkle_root
from node.storage.blobstore import BlobCorrupted, BlobNotFound, BlobStore
from node.types.transactions import NO_CARRY, AuditReport, FraudProof, WithheldClaim, WorkCommitment
from node.uPoW.assignment import assign_unit
from node.uPoW.data import UnitStream
from node.uPoW.evidence import evidence_lock, report_evidence
from node.uPoW.model_state import MODEL_MAGIC, BlobFormatError
from node.uPoW.state import STATE_DOMAIN
from node.uPoW.unit_compute import SegmentReplay
from node.uPoW.work import DELTA_MAGIC, LEAVES_MAGIC, decode_leaves

log = logging.getLogger("uponode.audit")

Fetch = Callable[[bytes], Awaitable[bool]]  # make a blob present in the local store
Replay = Callable[[bytes, UnitStream, int, bytes, bytes, bytes], Awaitable[SegmentReplay]]
Submit = Callable[[object], None]  # sign and send a payload


@dataclasses.dataclass(frozen=True)
class AuditTask:
    round: int
    miner: bytes
    unit: int
    commitment: WorkCommitment
    stream: UnitStream
    segments: tuple[int, ...]
    fallback: bool = False  # not assigned: checking a unit another auditor claimed withheld

    @property
    def name(self) -> str:
        return f"round {self.round} unit {self.miner.hex()[:8]}/{self.unit}"


def assigned_tasks(genesis: Genesis, me: bytes, round_: int, round_start_hash: bytes,
                   challenge: ChallengeRecord, commitments: list[tuple[bytes, int, WorkCommitment]],
                   claims: Sequence[tuple[bytes, int, int, bytes]] = ()) -> list[AuditTask]:
    """The units of round_ that me must audit, with the segments its draws give me; and,
    if me is eligible, a fallback task with every challenged segment for each unit with
    a withheld claim or a disputed report (miner, unit, segment, claimer or auditor) in
    claims that no draw gives me, so a false claim or a lazy auditor cannot cost an
    honest miner.  None while the challenge's choosers are not complete."""
    if challenge.drawn_seeds() is None:
        return []
    claimed = {(miner, unit) for miner, unit, _, _ in claims}
    tasks = []
    for miner, unit, commitment in commitments:
        unit_draws = challenge.unit_challenge(miner, unit, genesis.training)
        segments = unit_draws.segments_of(me)
        fallback = not segments
        if fallback:
            if (miner, unit) not in claimed or me not in challenge.eligible or me == miner:
                continue
            segments = unit_draws.segments
        stream = assign_unit(round_start_hash, miner, unit).stream(genesis.training, round_, commitment.start_step)
        tasks.append(AuditTask(round_, miner, unit, commitment, stream, segments, fallback))
    return tasks


class Auditor:
    def __init__(self, genesis: Genesis, me: bytes, blobs: BlobStore, fetch: Fetch, replay: Replay,
                 submit: Submit):
        self.genesis = genesis
        self.me = me
        self.blobs = blobs
        self.fetch = fetch
        self.replay = replay
        self.submit = submit
        self.done: set[tuple[int, bytes, int]] = set()  # (round, miner, unit) reported
        self.claimed: set[tuple[int, bytes, int, int]] = set()  # (round, miner, unit, segment)

    async def audit(self, task: AuditTask, may_claim: bool = False) -> bool:
        """Audit one unit; True once it is reported (pass or fraud), False to retry later.
        With may_claim (the claim window is open), an assigned auditor claims each
        challenged segment whose data it cannot fetch withheld, once."""
        key = (task.round, task.miner, task.unit)
        if key in self.done:
            return True
        leaves, missing = await self._missing(task)
        if leaves is None or missing:
            if may_claim and not task.fallback:
                self._claim(task, missing)
            return False
        reports = []
        for segment in task.segments:
            result = await self.replay(task.commitment.start_root, task.stream, segment,
                                       leaves[segment], task.commitment.delta_hash, task.commitment.carried_leaf)
            fraud = self._fraud(task, leaves, segment, result)
            if fraud is not None:
                log.warning("%s: segment %d FAILS (%s) in %.2f s: submitting a fraud proof",
                            task.name, segment, fraud[1], result.seconds)
                self.submit(fraud[0])
                self.done.add(key)
                return True
            if evidence_lock(result.gradient_digest) != task.commitment.evidence_locks[segment]:
                log.warning("%s: segment %d replays to its leaf but not to the miner's evidence "
                            "lock: not passing it", task.name, segment)
                self.done.add(key)
                return True
            log.info("%s: segment %d re-executed bit-exactly in %.2f s", task.name, segment,
                     result.seconds)
            reports.append(AuditReport(
                round=task.round, miner=task.miner, unit=task.unit, segment=segment,
                result_hash=result.end_hash, result_proof=tuple(inclusion_proof(leaves, segment + 1)),
                evidence=report_evidence(self.me, result.gradient_digest)))
        for report in reports:
            self.submit(report)
        self.done.add(key)
        return True

    async def _missing(self, task: AuditTask) -> tuple[list[bytes] | None, tuple[int, ...]]:
        """The unit's checked leaves (None if they cannot be had yet) and the challenged
        segments whose data cannot be had: all of them without valid leaves, else those
        whose start checkpoint is missing (for segment 0 of a unit that carries moments,
        or the checkpoint they come from), and the last segment if the delta is (its
        report attests the delta available, DESIGN.md §2)."""
        leaves = await self._leaves(task)
        if leaves is None:
            return None, task.segments
        if not await self.fetch(task.commitment.start_root):
            return None, ()  # the round's model: not the miner's to serve, so nothing to claim
        last = self.genesis.training.segments - 1
        missing = []
        for segment in task.segments:
            if not await self.fetch(leaves[segment]):
                log.info("%s: checkpoint %d is not available yet", task.name, segment)
                missing.append(segment)
            elif segment == last and not await self.fetch(task.commitment.delta_hash):
                log.info("%s: the delta is not available yet", task.name)
                missing.append(segment)
            elif segment == 0 and task.commitment.carried_leaf != NO_CARRY and not await self.fetch(
                    task.commitment.carried_leaf):
                log.info("%s: the checkpoint its moments carry is not available yet", task.name)
                missing.append(segment)
        return leaves, tuple(missing)

    def _claim(self, task: AuditTask, segments: tuple[int, ...]) -> None:
        for segment in segments:
            claim = (task.round, task.miner, task.unit, segment)
            if claim not in self.claimed:
                log.warning("%s: segment %d's data is withheld: claiming it", task.name, segment)
                self.submit(WithheldClaim(round=task.round, miner=task.miner, unit=task.unit, segment=segment))
                self.claimed.add(claim)

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
                      keep: dict[bytes, tuple[int, ...]], carried: set[bytes] = frozenset()) -> int:
    """Delete the stored checkpoints of commitments, except the leaf indices keep names
    per leaves hash and the checkpoints in carried (ones a miner's next unit may carry);
    returns how many were deleted.

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
    for leaf in sorted(named - kept - carried):
        if store.starts_with(leaf.hex(), STATE_DOMAIN):
            store.delete(leaf.hex())
            removed += 1
    return removed


def prune_unit_blobs(store: BlobStore, commitments: list[WorkCommitment], kept: set[bytes]) -> int:
    """Delete everything stored for commitments (checkpoints, leaves, deltas, start
    models, carried checkpoints) except the digests in kept; returns how many blobs were
    deleted.  Each digest is deleted only if its blob is of the kind the commitment names
    it as, so a commitment cannot name another kind of blob (a snapshot's chunk, say)
    for deletion."""
    removed = prune_checkpoints(store, commitments, {}, kept)
    named = {(digest, magic) for c in commitments
             for digest, magic in ((c.delta_hash, DELTA_MAGIC), (c.leaves_hash, LEAVES_MAGIC),
                                   (c.start_root, MODEL_MAGIC), (c.carried_leaf, STATE_DOMAIN))
             if digest != NO_CARRY}
    for digest, magic in sorted(named):
        if digest not in kept and store.starts_with(digest.hex(), magic):
            store.delete(digest.hex())
            removed += 1
    return removed
