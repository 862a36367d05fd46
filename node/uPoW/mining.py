"""Mining inside the full node: train this miner's units each round and commit them.

At a round's start (its start block finalized and the train phase still open) the
miner derives each of its units from chain randomness, trains them in the compute
worker, and submits a signed WorkCommitment per unit.  Once the round's challenge
block is final it stores the checkpoints the challenge asks of its units, so that
auditors can fetch them, and forgets the rest.  A miner restarted between commit and
challenge has lost those checkpoints (the worker keeps them in memory): it re-trains
the units it committed, which gives the same checkpoints bit for bit.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from node.types.genesis import Genesis
from node.types.transactions import NO_CARRY, AuditReport, EvidenceDispute, WorkCommitment
from node.uPoW.assignment import assign_unit, unit_segments
from node.uPoW.data import UnitStream
from node.uPoW.evidence import report_evidence
from node.uPoW.rounds import RoundSchedule
from node.uPoW.unit_compute import ComputeWorker

log = logging.getLogger("uponode.mining")

Submit = Callable[[object], None]


class Miner:
    def __init__(self, genesis: Genesis, me: bytes, worker: ComputeWorker, submit: Submit,
                 height: Callable[[], int], on_trained: Callable[[float], None] = lambda seconds: None):
        self.genesis = genesis
        self.me = me
        self.worker = worker
        self.submit = submit
        self.height = height  # the chain's finalized height now
        self.on_trained = on_trained  # told each unit's training time (metrics)
        self.schedule = RoundSchedule.from_genesis(genesis)
        self.started: set[int] = set()  # rounds whose units this miner has begun
        self.published: set[int] = set()  # rounds whose challenged checkpoints are stored
        # the gradient digest of each challenged segment, by (round, unit, segment)
        self.evidence: dict[tuple[int, int, int], bytes] = {}
        self.disputed: set[tuple[int, int, int, bytes]] = set()  # (round, unit, segment, auditor)
        self.tasks: set[asyncio.Task] = set()

    def on_height(self, height: int, units: int, round_start_hash: bytes | None, model_root: bytes,
                  carries: Callable[[], dict[int, tuple[bytes, int]]]) -> None:
        """Called after each finalized block with what the chain says about this miner:
        carries gives, per unit index, the checkpoint and AdamW step its next unit carries
        (its last accepted unit's end, which the worker's store holds); it is asked only
        when a round's units start."""
        round_ = self.schedule.round_of(height + 1)  # the round the next block belongs to
        if (units and round_start_hash is not None and round_ not in self.started
                and height < self.schedule.commit_deadline(round_)):
            self.started.add(round_)
            self._spawn(self._train_round(round_, units, round_start_hash, model_root, carries()))

    def on_challenge(self, round_: int, seeds: tuple[bytes, ...], round_start_hash: bytes,
                     commitments: list[WorkCommitment]) -> None:
        """Called after each finalized block once the challenge seeds of round_ are drawn,
        with its commitments of round_ on chain: the chain, not memory, says what to
        answer, so a miner restarted since it committed still answers."""
        if round_ in self.published:
            return
        self.published.add(round_)  # a round without our commitments is answered too
        if commitments:
            self._spawn(self._publish(round_, seeds, round_start_hash, commitments))

    def check_reports(self, round_: int, reports: list[tuple[int, int, bytes, AuditReport]]) -> None:
        """Called after each finalized block while round_'s disputes are open, with the
        standing reports (unit, segment, auditor, report) on this miner's units."""
        for key in [k for k in self.evidence if k[0] < round_]:
            del self.evidence[key]
        for unit, segment, auditor, report in reports:
            digest = self.evidence.get((round_, unit, segment))
            if digest is None or (round_, unit, segment, auditor) in self.disputed:
                continue
            if report.evidence != report_evidence(auditor, digest):
                log.warning("round %d unit %d: auditor %s passed segment %d without replaying it: "
                            "disputing", round_, unit, auditor.hex()[:8], segment)
                self.submit(EvidenceDispute(round=round_, miner=self.me, unit=unit, segment=segment,
                                            auditor=auditor, gradient_digest=digest))
                self.disputed.add((round_, unit, segment, auditor))

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _train_round(self, round_: int, units: int, start_hash: bytes, model_root: bytes,
                           carries: dict[int, tuple[bytes, int]]) -> None:
        for unit in range(units):
            if self._too_late(round_, unit, "skipped"):
                continue
            assignment = assign_unit(start_hash, self.me, unit)
            log.info("round %d unit %d: training %d steps from model %s", round_, unit,
                     self.genesis.training.steps_per_unit, model_root.hex()[:16])
            carried_leaf, step = carries.get(unit, (NO_CARRY, 0))
            try:
                trained = await self.worker.train(round_, unit, assignment.shard, model_root,
                                                  assignment.stream(self.genesis.training, round_, step),
                                                  carried_leaf)
            except Exception as exc:  # a unit that fails is skipped, never committed
                log.error("round %d unit %d: training failed: %s", round_, unit, exc)
                continue
            self.on_trained(trained.seconds)
            if self._too_late(round_, unit, f"trained in {trained.seconds:.1f} s, not committed"):
                continue
            log.info("round %d unit %d: trained in %.1f s, final loss %.4f, checkpoints %s, "
                     "committing", round_, unit, trained.seconds, trained.final_loss,
                     trained.commitment.checkpoint_root.hex()[:16])
            self.submit(trained.commitment)

    def _too_late(self, round_: int, unit: int, what: str) -> bool:
        """True once round_'s train phase is over: a unit behind it is never paid, and
        training it would only delay the next round's (say, behind a slow start)."""
        if self.height() < self.schedule.commit_deadline(round_):
            return False
        log.warning("round %d unit %d: %s: the round's train phase ended at height %d", round_,
                    unit, what, self.schedule.commit_deadline(round_))
        return True

    async def _publish(self, round_: int, seeds: tuple[bytes, ...], start_hash: bytes,
                       commitments: list[WorkCommitment]) -> None:
        for commitment in commitments:
            unit = commitment.unit
            segments = list(unit_segments(seeds, self.me, unit, self.genesis.training.segments,
                                          self.genesis.training.audit_segments))
            stream = assign_unit(start_hash, self.me, unit).stream(self.genesis.training, round_,
                                                                   commitment.start_step)
            digests = (await self.worker.publish(round_, unit, segments)
                       or await self.worker.held_evidence(commitment, stream, segments)
                       or await self._regenerate(commitment, stream, segments))
            if not digests:
                continue
            self.evidence.update({(round_, unit, s): d for s, d in zip(segments, digests)})
            log.info("round %d unit %d: serving the checkpoints of challenged segments %s",
                     round_, unit, segments)
        await self.worker.forget_before(round_ + 1)

    async def _regenerate(self, commitment: WorkCommitment, stream: UnitStream,
                          segments: list[int]) -> list[bytes] | None:
        """Re-train a committed unit whose checkpoints the worker lost (they live in its
        memory only) and store the challenged ones; their digests if that gave the
        commitment."""
        round_, unit = commitment.round, commitment.unit
        if self.height() >= self.schedule.close_height(round_) - 1:
            # the audit window is over (say, a node syncing past rounds): no one asks now
            log.warning("round %d unit %d: checkpoints lost, and the audit window is over",
                        round_, unit)
            return None
        log.warning("round %d unit %d: checkpoints lost (restart?); re-training to answer the "
                    "challenge", round_, unit)
        try:
            digests = await self.worker.publish_regenerated(commitment, stream, segments)
        except Exception as exc:
            log.error("round %d unit %d: re-training failed: %s", round_, unit, exc)
            return None
        if digests is None:
            log.error("round %d unit %d: re-training did not give the commitment on chain "
                      "(checkpoints %s); publishing nothing", round_, unit,
                      commitment.checkpoint_root.hex()[:16])
        return digests

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
