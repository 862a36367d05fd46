"""The compute a miner and an auditor do, over the node's blob store.

UnitCompute trains units, replays challenged segments and decides fraud proofs,
reading models and checkpoints from the blob store and writing what others will
fetch into it.  A
full node runs it in a worker process (ComputeWorker) so training never stalls
consensus; the light-audit node runs it in its own process.

How a unit is trained is the node's to wire: the honest train_unit by default; a
test's cheating miner (tests/integration/cheating_miner.py) wires its own.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import dataclasses
import multiprocessing
import os
import pathlib
import signal
import sys
import threading
import time
from typing import Callable, TypeVar

from kernels.backend import Backend, backend_named
from node.types.genesis import Genesis, load_genesis
from node.storage.blobstore import BlobStore
from node.types.transactions import NO_CARRY, WorkCommitment
from node.uPoW.data import UnitStream
from node.uPoW.model_state import ModelState, decode_model
from node.uPoW.state import NonFiniteStateError, TrainingState, decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import (UnitWork, commitment_for, decode_leaves, float32_from_bits, train_unit,
                            unit_delta)
from node.uPoW.fraud_question import FraudQuestion
from node.uPoW.replay import InvalidCheckpoint, confirm_fraud, replay_segment

# Trains one unit from the round's model on the unit's data stream and
# returns its checkpoints, leaves and delta.  A worker process gets it by pickling, so
# it must be a module-level function.
UnitTrainer = Callable[[Trainer, ModelState, UnitStream, TrainingState | None], UnitWork]


@dataclasses.dataclass(frozen=True)
class TrainedUnit:
    commitment: WorkCommitment
    seconds: float
    final_loss: float


@dataclasses.dataclass(frozen=True)
class SegmentReplay:
    """What re-executing one segment gave: the end state's hash and the segment's
    gradient digest, or why the start is not a state of the unit; for the last segment
    also the delta's hash."""
    end_hash: bytes | None
    delta_hash: bytes | None
    invalid_start: str | None
    seconds: float
    gradient_digest: bytes | None = None


class UnitCompute:
    def __init__(self, genesis: Genesis, blobs: BlobStore, backend: Backend | None = None,
                 unit_trainer: UnitTrainer = train_unit):
        self.genesis = genesis
        self.blobs = blobs
        self.trainer = Trainer(genesis, backend=backend)
        self.unit_trainer = unit_trainer
        # checkpoints of units trained but not yet challenged, by (round, unit)
        self._kept: dict[tuple[int, int], UnitWork] = {}

    def _model(self, root: bytes) -> ModelState:
        return decode_model(self.trainer.layout, self.blobs.get(root.hex()))

    def _carried(self, leaf: bytes) -> TrainingState | None:
        """The checkpoint leaf (which must be in the store) whose moments a unit carries;
        None for NO_CARRY."""
        return None if leaf == NO_CARRY else decode_state(self.trainer.layout, self.blobs.get(leaf.hex()))

    def train(self, round_: int, unit: int, shard: int, model_root: bytes, stream: UnitStream,
              carried_leaf: bytes = NO_CARRY) -> TrainedUnit:
        """Train one unit from the model model_root, carrying the moments of the checkpoint
        carried_leaf (at stream.step) or fresh ones; store its leaves, its delta and its
        end state, which its next unit of this index carries once it is accepted."""
        started = time.perf_counter()
        work = self.unit_trainer(self.trainer, self._model(model_root), stream, self._carried(carried_leaf))
        for blob in (work.leaves_blob, work.delta_blob, work.checkpoints[-1]):
            self.blobs.put(blob)
        self._kept[(round_, unit)] = work
        commitment = commitment_for(round_, unit, shard, model_root, work, carried_leaf, stream.step)
        final_loss = float32_from_bits(work.loss_trace[-1])
        return TrainedUnit(commitment, time.perf_counter() - started, final_loss)

    # A challenge names segments; the checkpoint a segment starts from is the leaf of the
    # same index.  Each publishing call returns the challenged segments' gradient
    # digests, which the miner needs to check its auditors' evidence; None if it could
    # not publish.

    def publish(self, round_: int, unit: int, segments: list[int]) -> list[bytes] | None:
        """Store the checkpoints a challenge asks for, then forget the unit's others;
        None if this worker does not hold the unit (it restarted since training it)."""
        work = self._kept.pop((round_, unit), None)
        if work is None:
            return None
        return self._store_checkpoints(work, segments)

    def held_evidence(self, commitment: WorkCommitment, stream: UnitStream,
                      segments: list[int]) -> list[bytes] | None:
        """For checkpoints the store holds already (published before a restart): the
        digests, found by replaying those segments; None if the store lacks any."""
        if not self.blobs.has(commitment.leaves_hash.hex()):
            return None
        leaves = decode_leaves(self.blobs.get(commitment.leaves_hash.hex()))
        if not all(self.blobs.has(leaves[segment].hex()) for segment in segments):
            return None
        model = self._model(commitment.start_root)
        return [replay_segment(self.trainer, model, stream, segment, self.blobs.get(leaves[segment].hex()),
                               self._carried(commitment.carried_leaf) if segment == 0 else None)[2]
                for segment in segments]

    def publish_regenerated(self, commitment: WorkCommitment, stream: UnitStream,
                            segments: list[int]) -> list[bytes] | None:
        """Re-train a committed unit this worker no longer holds and store the checkpoints
        a challenge asks for.  Training is bit-deterministic, so the work is exactly what
        was committed; if it is not (the commitment is not this unit's work, or the
        trainer changed), store nothing and return None."""
        work = self.unit_trainer(self.trainer, self._model(commitment.start_root), stream,
                                 self._carried(commitment.carried_leaf))
        if commitment_for(commitment.round, commitment.unit, commitment.shard, commitment.start_root, work,
                          commitment.carried_leaf, commitment.start_step) != commitment:
            return None
        for blob in (work.leaves_blob, work.delta_blob, work.checkpoints[-1]):
            self.blobs.put(blob)
        return self._store_checkpoints(work, segments)

    def _store_checkpoints(self, work: UnitWork, segments: list[int]) -> list[bytes]:
        for segment in segments:
            self.blobs.put(work.checkpoints[segment])
        return [work.evidence[segment] for segment in segments]

    def forget_before(self, round_: int) -> None:
        for key in [k for k in self._kept if k[0] < round_]:
            del self._kept[key]

    def replay(self, model_root: bytes, stream: UnitStream, segment: int, start_hash: bytes,
               committed_delta: bytes, carried_leaf: bytes = NO_CARRY) -> SegmentReplay:
        """Re-execute segment from the checkpoint start_hash (which must be in the store,
        with carried_leaf's for segment 0 of a unit that carries moments); for the last
        segment also hash the delta it gives, against committed_delta, and keep the end
        state, which the unit's next one may carry."""
        started = time.perf_counter()
        model = self._model(model_root)
        carried = self._carried(carried_leaf) if segment == 0 else None
        try:
            end_hash, end, digest = replay_segment(self.trainer, model, stream, segment,
                                                   self.blobs.get(start_hash.hex()), carried)
        except (InvalidCheckpoint, NonFiniteStateError) as exc:
            return SegmentReplay(None, None, str(exc), time.perf_counter() - started)
        delta_hash = None
        if segment == self.genesis.training.segments - 1:
            end = self.trainer.host_state(end)
            delta_hash, _ = unit_delta(model, end.params)
            # a validator checking a delta fraud proof fetches this state here, and the
            # auditor of the unit's next one its carried moments
            self.blobs.put(encode_state(self.trainer.layout, end))
        return SegmentReplay(end_hash, delta_hash, None, time.perf_counter() - started, digest)

    def confirm_fraud(self, question: FraudQuestion) -> bool:
        """The verdict on a fraud proof (WorkOracle.confirm_fraud's meaning); the model and
        the start checkpoint must be in the store."""
        q = question
        carried = q.commitment.carried_leaf
        carried_blob = self.blobs.get(carried.hex()) if q.proof.segment == 0 and carried != NO_CARRY else None
        return confirm_fraud(self.trainer, self._model(q.model_root), q.stream, q.commitment,
                             q.proof, self.blobs.get(q.proof.start_hash.hex()), carried_blob)


# -- the worker process of a full node

_compute: UnitCompute | None = None
_Result = TypeVar("_Result")


PARENT_CHECK_S = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _die_with(parent: int) -> None:
    """End this worker once its node is gone, however it went: a node killed with SIGKILL
    cannot shut the pool down, and its worker would otherwise wait on the call queue for
    good (or train on for minutes)."""
    if sys.platform == "linux":
        # the kernel kills us with the node, even inside a kernel that holds the GIL.  It
        # watches the thread that spawned us: the one that made the ComputeWorker, the
        # node's main thread
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the node died before prctl
        os._exit(0)
    # elsewhere, and should prctl fail: look between kernel calls
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="exit-with-node").start()


def _init_worker(parent: int, genesis_path: str, blob_root: str, backend: str,
                 unit_trainer: UnitTrainer) -> None:
    global _compute
    _die_with(parent)
    _compute = UnitCompute(load_genesis(genesis_path), BlobStore(pathlib.Path(blob_root)),
                           backend_named(backend), unit_trainer)


def _run_in_worker(method: Callable[..., _Result], *args) -> _Result:
    return method(_compute, *args)


def _nothing() -> None:
    """Submitted at once, so that the worker process starts with the node."""


class ComputeWorker:
    """One spawned process holding a UnitCompute on the named backend ("cpu" or
    "cuda"); calls run in order, off the event loop.  Each method runs the
    UnitCompute method of the same name there."""

    def __init__(self, genesis_path: pathlib.Path, blob_root: pathlib.Path, backend: str = "cpu",
                 unit_trainer: UnitTrainer = train_unit):
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(), str(genesis_path), str(blob_root), backend, unit_trainer))
        # a process starts (imports, kernels) in seconds: not at the first call, which may be
        # a restarted miner's answer to a challenge, due within the audit window
        self._pool.submit(_nothing)

    async def _run(self, method: Callable[..., _Result], *args) -> _Result:
        # the method travels by its qualified name, the arguments by pickling
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, _run_in_worker, method, *args)

    async def train(self, round_: int, unit: int, shard: int, model_root: bytes, stream: UnitStream,
                    carried_leaf: bytes = NO_CARRY) -> TrainedUnit:
        return await self._run(UnitCompute.train, round_, unit, shard, model_root, stream, carried_leaf)

    async def publish(self, round_: int, unit: int, segments: list[int]) -> list[bytes] | None:
        return await self._run(UnitCompute.publish, round_, unit, segments)

    async def held_evidence(self, commitment: WorkCommitment, stream: UnitStream,
                            segments: list[int]) -> list[bytes] | None:
        return await self._run(UnitCompute.held_evidence, commitment, stream, segments)

    async def publish_regenerated(self, commitment: WorkCommitment, stream: UnitStream,
                                  segments: list[int]) -> list[bytes] | None:
        return await self._run(UnitCompute.publish_regenerated, commitment, stream, segments)

    async def forget_before(self, round_: int) -> None:
        await self._run(UnitCompute.forget_before, round_)

    async def replay(self, model_root: bytes, stream: UnitStream, segment: int, start_hash: bytes,
                     committed_delta: bytes, carried_leaf: bytes = NO_CARRY) -> SegmentReplay:
        return await self._run(UnitCompute.replay, model_root, stream, segment, start_hash,
                               committed_delta, carried_leaf)

    async def confirm_fraud(self, question: FraudQuestion) -> bool:
        return await self._run(UnitCompute.confirm_fraud, question)

    def close(self) -> None:
        """Stop the worker now, even mid-unit: the pool's own shutdown lets the running call
        end first, and the node's exit waits for it (minutes for a unit)."""
        processes = list((self._pool._processes or {}).values())  # no public way before 3.14
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
