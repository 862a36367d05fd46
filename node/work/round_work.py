"""A full node's part in the training rounds: mine, audit, and fetch the blobs that
checking blocks needs.

After each finalized block it looks at the chain state: at a round's start the
miner trains its units; once the challenge is drawn the miner stores its challenged
checkpoints and every assigned auditor audits; during the audit phase the node
fetches the deltas of the round's units (the closing block needs them) and re-serves
whatever it fetched.  Compute runs in one worker process, so consensus never waits
on training.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Sequence

from node.net.blob_fetch import BlobFetcher
from node.rpc.metrics import Metrics
from node.rpc.status import WorkProgress
from node.state.chain import Chain
from node.types.genesis import Genesis
from node.uPoW.mining import Miner
from node.uPoW.rounds import AUDIT, RoundSchedule
from node.uPoW.state import blob_limit
from node.uPoW.unit_compute import ComputeWorker
from node.types.transactions import DeltaWithheld, FraudProof, RegisterMiner
from node.verify.auditor import Auditor, assigned_tasks, prune_checkpoints

log = logging.getLogger("uponode.rounds")

REGISTER_RETRY_BLOCKS = 10


class RoundWork:
    def __init__(self, genesis: Genesis, chain: Chain, me: bytes, mine: bool, units: int,
                 worker: ComputeWorker, fetcher: BlobFetcher,
                 addresses: Callable[[], Sequence[str]], submit: Callable[[object], None],
                 metrics: Metrics):
        self.genesis = genesis
        self.chain = chain
        self.me = me
        self.mine = mine
        self.units = units  # the units this node asks to take each round (its config's)
        self.fetcher = fetcher
        self.addresses = addresses
        self.submit = submit
        self.schedule = RoundSchedule.from_genesis(genesis)
        self.blob_limit = blob_limit(genesis)
        self.metrics = metrics
        self.miner = Miner(genesis, me, worker, submit, lambda: chain.height, self._trained)
        self.auditor = Auditor(genesis, me, fetcher.store, self.fetch, worker.replay, self._audit_submit)
        self._registered_at: int | None = None  # height at which we asked to become a miner
        self._auditing: asyncio.Task | None = None
        self._fetching: set[bytes] = set()
        self._delta_claims: set[tuple[int, bytes, int]] = set()  # (round, miner, unit) claimed
        self.progress = WorkProgress()  # what /status shows of this node's own work

    async def fetch(self, digest: bytes) -> bool:
        return await self.fetcher.ensure(digest, list(self.addresses()), self.blob_limit)

    def fetch_soon(self, digest: bytes) -> None:
        """Fetch a blob in the background (one a block check found missing)."""
        if digest in self._fetching:
            return
        self._fetching.add(digest)
        task = asyncio.create_task(self.fetch(digest))
        task.add_done_callback(lambda _: self._fetching.discard(digest))

    def on_block(self) -> None:
        state = self.chain.state
        height = self.chain.height
        if self.mine:
            self._mine(state, height)
        if self.schedule.is_close(height):
            self._note_reward(height)
            if height > self.schedule.round_blocks:
                self._prune_checkpoints(state, self.schedule.round_of(height) - 1)
        round_ = self.schedule.round_of(height) if height else 0
        challenge = state.challenge(round_)
        if challenge is None:
            return
        commitments = state.round_commitments(round_)
        if self.schedule.phase(height) == AUDIT or height == self.schedule.challenge_height(round_) + 1:
            for _, _, commitment in commitments:
                self.fetch_soon(commitment.delta_hash)
        if height < self.schedule.close_height(round_) and (
                self._auditing is None or self._auditing.done()):
            tasks = assigned_tasks(self.genesis, self.me, round_, state.round_start_hash(round_), challenge,
                                   commitments, state.round_fallback_openings(round_))
            if tasks:
                self.progress.at_round(round_)
                self.progress.audit_tasks = len(tasks)
                # the block being built next is the one a claim would land in
                may_claim = height + 1 in self.schedule.claim_window(round_)
                self._auditing = asyncio.create_task(self._audit(tasks, may_claim))
        # from the claim window up to the close itself, which counts the claims it carries
        claims_open = self.schedule.claim_window(round_).start <= height + 1 <= self.schedule.close_height(round_)
        if claims_open and state.committee().power_of(self.me):
            self._claim_missing_deltas(state, round_)

    async def _audit(self, tasks, may_claim: bool) -> None:
        for task in tasks:
            if (task.round, task.miner, task.unit) in self.auditor.done:
                continue  # reported at an earlier block: counted then
            started = time.monotonic()
            try:
                reported = await self.auditor.audit(task, may_claim)
            except Exception as exc:  # one unit's trouble must not stop the others
                log.error("%s: audit failed: %s", task.name, exc)
                continue
            if reported:
                self.progress.audits_done += 1
                self.metrics.inc("uponode_audits_total")
                self.metrics.observe("uponode_audit_seconds", time.monotonic() - started)

    def _audit_submit(self, payload) -> None:
        if isinstance(payload, FraudProof):
            self.metrics.inc("uponode_frauds_found_total")
        self.submit(payload)

    def _note_reward(self, close_height: int) -> None:
        block = self.chain.block(close_height)
        if block is not None and block.close:
            close = block.close[0]
            amount = sum(p.amount for p in close.payments if p.to == self.me)
            if amount:
                self.progress.last_reward = (close.round, amount)

    def _trained(self, seconds: float) -> None:
        self.progress.at_round(self.schedule.round_of(self.chain.height + 1))
        self.progress.units_trained += 1
        training = self.genesis.training
        self.metrics.inc("uponode_units_trained_total")
        self.metrics.observe("uponode_unit_seconds", seconds)
        tokens = training.steps_per_unit * training.batch_size * self.genesis.model.context_length
        self.metrics.set("uponode_training_tokens_per_second", tokens / seconds if seconds > 0 else 0.0)

    def _claim_missing_deltas(self, state, round_: int) -> None:
        """As a committee member, claim withheld every attested delta still missing here
        in the claim window, so the close can go on without it (DESIGN.md §2)."""
        last = self.genesis.training.segments - 1
        attested = {(m, u) for m, u, s, _ in state.round_audits(round_) if s == last}
        claimed = {(m, u) for m, u, v in state.round_delta_claims(round_) if v == self.me}
        for miner, unit, commitment in state.round_commitments(round_):
            key = (round_, miner, unit)
            if ((miner, unit) in attested and (miner, unit) not in claimed and key not in self._delta_claims
                    and not self.fetcher.store.has(commitment.delta_hash.hex())):
                log.warning("round %d unit %s/%d: the attested delta is not served: claiming it withheld",
                            round_, miner.hex()[:8], unit)
                self.submit(DeltaWithheld(round=round_, miner=miner, unit=unit))
                self._delta_claims.add(key)

    def _mine(self, state, height: int) -> None:
        miner = state.miner(self.me)
        if miner is None or miner.units < self.units:
            self._register(state, height)
        if miner is None:
            return
        units = min(miner.units, self.units)
        next_round = self.schedule.round_of(height + 1)
        start_height = self.schedule.start_height(next_round)
        start_hash = self._block_hash(start_height)
        self.miner.on_height(height, units, start_hash, state.model().root, lambda: self._carries(state, units))
        done = self.schedule.round_of(height) if height else 0
        challenge = state.challenge(done)
        seeds = challenge.drawn_seeds() if challenge is not None else None
        if seeds is not None and done not in self.miner.published:
            mine = [c for m, _, c in state.round_commitments(done) if m == self.me]
            self.miner.on_challenge(done, seeds, state.round_start_hash(done), mine)
        if challenge is not None and height + 1 in self.schedule.delta_claim_window(done):
            # only the units whose digests this miner holds can be checked: no scan of the round
            units = sorted({unit for round_, unit, _ in self.miner.evidence if round_ == done})
            reports = [(unit, segment, auditor, report) for unit in units
                       for segment, auditor, report in state.standing_reports(done, self.me, unit)]
            self.miner.check_reports(done, reports)

    def _carries(self, state, units: int) -> dict[int, tuple[bytes, int]]:
        """Per unit index, the checkpoint and AdamW step its next unit carries: its last
        accepted unit's end, where this node still holds that state."""
        return {unit: (carry.leaf, carry.step) for unit in range(units)
                if (carry := state.carry(self.me, unit)) is not None and self.fetcher.store.has(carry.leaf.hex())}

    def _register(self, state, height: int) -> None:
        # asked once, and again if the registration has not landed after a while
        if self._registered_at is not None and height < self._registered_at + REGISTER_RETRY_BLOCKS:
            return
        self._registered_at = height
        bond, needed = state.account(self.me).bond, self.units * self.genesis.economics.min_miner_bond
        if bond < needed:
            log.warning("cannot register for %d units: bond %d is below the miner minimum %d for them",
                        self.units, bond, needed)
            return
        log.info("registering as a miner of %d units", self.units)
        self.submit(RegisterMiner(units=self.units))

    def _prune_checkpoints(self, state, round_: int) -> None:
        """Delete the checkpoints of a round whose challenge window closed a round ago
        (DESIGN.md §5).  Deltas and models stay for the retention window: a node syncing
        within it re-checks the round closes from them.  So do the starts of proven frauds,
        which it re-checks too."""
        commitments = state.round_commitments(round_)
        keep = {c.leaves_hash: (f.segment,) for m, u, c in commitments
                if (f := state.fraud_record(round_, m, u)) is not None}
        removed = prune_checkpoints(self.fetcher.store, [c for _, _, c in commitments], keep,
                                    state.carried_leaves())
        if removed:
            log.info("round %d: pruned %d checkpoints past their challenge window", round_, removed)

    def _block_hash(self, height: int) -> bytes:
        if height == 0:
            return self.chain.genesis_hash
        return self.chain.block(height).hash

    def close(self) -> None:
        self.miner.close()
        if self._auditing is not None:
            self._auditing.cancel()
