"""Fraud proofs enter the mempool only once their replay is decided, off the event loop.

Anyone can send a fraud proof, and deciding one costs a segment's replay (0.1–0.4 s at
the devnet's size), so a proof offered to this node, by a client or a peer, is first
screened by the mempool's cheap checks (signature, nonce, the deposit, a sender whose
proof already failed), then dry-run through the ledger's own rule on the head state
(check_fraud_proof), which refuses a malformed proof before any replay.  A blob the
replay needs is fetched from peers, or taken from the upload that came with the proof
(a light auditor's start checkpoint, which its miner may withhold from everyone else)
once the rule has checked, by its Merkle proof, that it is the leaf the proof names.
The replay runs in the compute worker and its verdict is remembered by the oracle; only
then does the proof enter the mempool and go on to peers, and proposing and checking
the block that carries it are look-ups.  A block carrying a proof this node has not
seen gets "not yet" from the oracle, which starts the replay here (replay_soon).

At most MAX_DECIDING proofs are decided at once, one per sender, so a flood of
proofs queues no unbounded work on the worker (each one that fails still costs its
sender the deposit on chain).  The auditors assigned to the proof's unit are never
turned away as busy: they are bonded and few per unit, so spam from fresh keys
cannot crowd them out.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Coroutine

from node.state.chain import Chain
from node.state.mempool import Mempool, MempoolError
from node.state.transition import Transition, TxError
from node.state.tx_rules import FRAUD_PROOFS_PER_BLOCK, check_fraud_proof
from node.types.crypto import sha256
from node.types.transactions import FraudProof, SignedTx
from node.uPoW.fraud_question import FraudQuestion, ReplayPending
from node.uPoW.oracle import WorkUnavailable
from node.uPoW.unit_compute import ComputeWorker
from node.uPoW.work_oracle import BlobWorkOracle

log = logging.getLogger("uponode.fraud")

# twice what a block may carry: more, decided now, would only wait for later blocks
MAX_DECIDING = 2 * FRAUD_PROOFS_PER_BLOCK
# what one decision may wait for, in turn: the model, the start checkpoint, the replay
ATTEMPTS = 4
# a proof is checked before the next block has a proposer, and nothing its check reads depends on it
_PROPOSER_UNKNOWN = bytes(32)

Fetch = Callable[[bytes], Awaitable[bool]]


class FraudIntake:
    def __init__(self, chain: Chain, mempool: Mempool, oracle: BlobWorkOracle,
                 worker: ComputeWorker, fetch: Fetch):
        self.chain = chain
        self.mempool = mempool
        self.oracle = oracle
        self.worker = worker
        self.fetch = fetch
        self._deciding: set[bytes] = set()  # senders whose proof is being decided
        self._replays: dict[bytes, asyncio.Task] = {}  # by question key
        self._tasks: set[asyncio.Task] = set()

    async def admit(self, tx: SignedTx, start_blob: bytes | None = None) -> None:
        """Put fraud proof tx in the mempool with its verdict, or raise MempoolError.
        start_blob, if given, is the proof's start checkpoint."""
        chain_id, sender = self.chain.genesis.chain_id, tx.body.sender
        if not isinstance(tx.body.payload, FraudProof):
            raise MempoolError("not_fraud_proof", "the transaction is not a fraud proof")
        self.mempool.screen(tx, self.chain.state, chain_id)
        if start_blob is not None and await asyncio.to_thread(sha256, start_blob) != tx.body.payload.start_hash:
            raise MempoolError("wrong_start", "the checkpoint sent is not the one the proof starts from")
        if sender in self._deciding:
            raise MempoolError("deciding", "a fraud proof from this sender is being decided")
        if len(self._deciding) >= MAX_DECIDING and not self._assigned(sender, tx.body.payload):
            raise MempoolError("busy", f"{MAX_DECIDING} fraud proofs are being decided")
        self._deciding.add(sender)
        try:
            shows_fraud = await self.decide(sender, tx.body.payload, start_blob)
            self.mempool.add(tx, self.chain.state, chain_id, shows_fraud)
        finally:
            self._deciding.discard(sender)
        log.info("fraud proof %s from %s admitted: it %s", tx.hash.hex()[:16], sender.hex()[:16],
                 "shows fraud" if shows_fraud else "shows no fraud (its deposit will burn)")

    def _assigned(self, sender: bytes, proof: FraudProof) -> bool:
        record = self.chain.state.challenge(proof.round)
        challenge = (record.unit_challenge(proof.miner, proof.unit, self.chain.genesis.training)
                     if record is not None else None)
        return challenge is not None and sender in challenge.auditors

    def offer(self, tx: SignedTx, then: Callable[[], None]) -> None:
        """Admit tx in the background (a proof from a peer) and call then once it is in."""
        async def admit() -> None:
            try:
                await self.admit(tx)
            except MempoolError as exc:
                log.debug("fraud proof %s not admitted: %s", tx.hash.hex()[:16], exc)
                return
            then()
        self.spawn(admit())

    async def decide(self, sender: bytes, proof: FraudProof, start_blob: bytes | None = None) -> bool:
        """Whether proof from sender shows fraud, as the next block would decide it;
        MempoolError if the ledger would refuse it or a blob it needs cannot be had."""
        for _ in range(ATTEMPTS):
            chain = self.chain
            t = Transition(chain.state, chain.genesis, chain.height + 1, chain.head.block_hash,
                           chain.last_commit(), _PROPOSER_UNKNOWN, self.oracle)
            try:
                return check_fraud_proof(t, sender, proof)
            except TxError as exc:
                raise MempoolError(exc.reason, f"the ledger refuses it ({exc})") from None
            except ReplayPending as pending:
                await self._verdict(pending.question)
            except WorkUnavailable as missing:
                if start_blob is not None and missing.digest == proof.start_hash:
                    # the rule checked the Merkle proof: this is the unit's committed leaf
                    await asyncio.to_thread(self.oracle.blobs.put, start_blob)
                    start_blob = None
                elif not await self.fetch(missing.digest):
                    raise MempoolError("unavailable", f"no peer serves blob {missing.digest.hex()[:16]}…, "
                                                      f"which deciding the proof needs") from None
        raise MempoolError("undecided", "the proof could not be decided")

    def replay_soon(self, question: FraudQuestion) -> None:
        """Start question's replay in the compute worker, once; its verdict goes to the
        oracle (the oracle calls this on a verdict it does not know)."""
        key = question.key
        if key not in self._replays:
            task = self.spawn(self._replay(question))
            self._replays[key] = task
            task.add_done_callback(lambda _: self._replays.pop(key, None))

    async def _replay(self, question: FraudQuestion) -> bool:
        verdict = await self.worker.confirm_fraud(question)
        self.oracle.verdicts.remember(question, verdict)
        return verdict

    async def _verdict(self, question: FraudQuestion) -> bool:
        replay = self._replays.get(question.key)
        if replay is None:  # decided since the oracle was asked
            return self.oracle.verdicts.get(question)
        try:
            # one caller cancelled must not cancel the replay the others wait for
            return await asyncio.shield(replay)
        except Exception as exc:  # a blob pruned meanwhile, a worker that died
            raise MempoolError("replay_failed", f"the replay failed: {exc}") from None

    def spawn(self, coroutine: Coroutine) -> asyncio.Task:
        """Run coroutine as a task this intake holds until it ends (or close cancels it)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("fraud proof work failed: %s", task.exception())

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
