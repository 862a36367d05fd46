"""The full node: wiring of store, chain, mempool, consensus, peers and HTTP API.

One aiohttp server serves the HTTP API and the peer WebSocket.  Consensus is
sans-I/O (node.consensus.driver): this module feeds it peers' messages, new
connections, timers and a periodic tick, and carries out its actions (sends,
timers, finalized blocks, evidence).  A node that learns of a higher head from a
peer's status block-syncs, checking every commit, then joins consensus at the next
height.  Fraud proofs, its own and others', are decided off the event loop before
they enter the mempool (node/work/fraud_intake.py).
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from node.net.blob_fetch import BlobFetcher
from node.types.blocks import Block
from node.types.votes import Vote
from node.state.block_sync import BlockSync, InvalidSyncedBlock
from node.state.chain import Chain
from node.state.consensus_chain import ConsensusChain
from node.consensus.core import Evidence, Timeout, TimeoutConfig
from node.consensus.driver import (ConsensusDriver, DriverAction, Finalized, ForgedMessage,
                                   NextHeight, Send, SetTimer)
from node.cmd.malloc import release_free_memory
from node.consensus.guard import SignGuard
from node.consensus.step_timing import StepTiming
from node.types.proposal import Proposal
from node.storage.home import GENESIS_FILE, NodeHome
from node.state.mempool import EXPIRY_BLOCKS, Mempool, MempoolError
from node.state.retention import first_kept_block
from node.state.snapshot_store import SnapshotStore
from node.verify.store_start import Stopped, open_chain_store
from node.rpc.metrics import Metrics
from node.net.p2p import InvalidPeerMessage, PeerNetwork
from node.net.peer_exchange import PeerExchange
from node.work.blob_retention import prune_forgotten_round
from node.work.fraud_intake import FraudIntake
from node.work.round_work import RoundWork
from node.rpc.api import NodeAPI, json_errors, rpc_routes
from node.rpc.status import NodeStatus
from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.storage.config import parse_host_port
from node.types.transactions import DoubleSignEvidence, FraudProof, SignedTx, Transfer, sign_tx
from node.uPoW.model_state import genesis_model_blob
from node.uPoW.backends import backend_named
from node.uPoW.fraud_question import FraudQuestion
from node.uPoW.rounds import RoundSchedule
from node.uPoW.unit_compute import ComputeWorker, UnitTrainer
from node.uPoW.work import train_unit
from node.uPoW.work_oracle import BlobWorkOracle
from node.net.wire import Blocks, GetBlocks, Status, TxMessage

log = logging.getLogger("uponode.node")

STATUS_INTERVAL_S = 1.0  # also how often consensus re-gossips what peers lack
MEMPOOL_TXS = 20_000
GUARD_FILE = "sign_guard"
SNAPSHOTS_FILE = "snapshots.json"
PEERS_FILE = "peers.json"  # the address book peer exchange keeps
# LevelDB's info LOG grows about 1.6 kB and its MANIFEST 0.2 kB a compaction until the
# store is opened again; reopening this often keeps both under about 50 kB.
REOPEN_EVERY_COMPACTIONS = 16
# Tendermint's defaults: timeouts only matter when a round fails, and they must leave
# a loaded node time to build, send and check a full block
TIMEOUTS = TimeoutConfig(propose_ms=3000, prevote_ms=1000, precommit_ms=1000, delta_ms=500)


class Node:
    def __init__(self, home: NodeHome, listen: str, peers: tuple[str, ...], mine: bool = True,
                 backend: str = "cpu", unit_trainer: UnitTrainer = train_unit, state_sync: bool = False,
                 archive: bool = False):
        self.home = home
        self.mine = mine
        self.state_sync = state_sync  # begin an empty home from a peer's snapshot
        self.archive = archive  # replay the chain from genesis, never begin from a snapshot
        self.backend = backend  # where training, replays and round closes compute
        self.unit_trainer = unit_trainer  # how the compute worker trains a unit
        self.genesis = home.genesis
        self.schedule = RoundSchedule.from_genesis(self.genesis)
        self.key = home.key
        self.listen = listen
        self.peer_addresses = peers
        self.store: ChainStore | None = None
        self.chain: Chain | None = None
        self.mempool = Mempool(MEMPOOL_TXS, self.genesis.consensus.max_tx_bytes, self.genesis.economics)
        self.metrics = Metrics()
        home.data_dir.mkdir(exist_ok=True)  # a home whose chain was deleted begins a new one
        self.guard = SignGuard(home.data_dir / GUARD_FILE)
        self.driver: ConsensusDriver | None = None
        self.sync: BlockSync | None = None
        self.network = PeerNetwork(self.key, self.genesis.chain_id, bytes.fromhex(self.genesis.hash),
                                   listen, self._head, self._on_message,
                                   on_connect=self._on_peer_connected, on_traffic=self._count_traffic,
                                   on_ban=lambda: self.metrics.inc("uponode_peer_bans_total"),
                                   trusted_hosts=frozenset(parse_host_port(p)[0] for p in peers))
        self._timers: list[asyncio.TimerHandle] = []
        self._told_pruned = -1  # the height at which block sync last found its peers pruned
        self.steps = StepTiming()
        self._previous_time_ms: int | None = None  # the last finalized block's, for the block interval
        self.blobs = BlobStore(home.blobs_dir)
        self.blobs.put(genesis_model_blob(self.genesis))  # what round 0 trains from
        # fraud-proof replays run in the compute worker, never in the event loop
        self.oracle = BlobWorkOracle(self.genesis, self.blobs, backend_named(backend),
                                     replay_elsewhere=self._replay_soon)
        self.work: RoundWork | None = None
        self.intake: FraudIntake | None = None
        self.snapshots = SnapshotStore(home.data_dir / SNAPSHOTS_FILE, self.blobs)
        self._snapshotting: asyncio.Task | None = None
        self._compacting: asyncio.Task | None = None  # LevelDB dropping pruned blocks, off the loop
        self._compactions = 0

    # -- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        try:
            self.store = await open_chain_store(self.home.data_dir / "chain", self.genesis, self.blobs,
                                                list(self.peer_addresses), self.state_sync, self.archive, stop)
        except Stopped:
            return  # stopped before a snapshot was in
        try:
            self.chain = Chain(self.genesis, self.store, self.oracle)
            log.info("chain %s at height %d; training, replays and round closes on the %s "
                     "backend", self.genesis.chain_id, self.chain.height, self.backend)
            worker = ComputeWorker(self.home.path / GENESIS_FILE, self.home.blobs_dir, self.backend,
                                   self.unit_trainer)
            fetcher = BlobFetcher(self.blobs)
            self.work = RoundWork(self.genesis, self.chain, self.key.public_key, self.mine,
                                  self.home.config.units, worker, fetcher, self._blob_addresses,
                                  self._submit, self.metrics)
            self.intake = FraudIntake(self.chain, self.mempool, self.oracle, worker, self.work.fetch)
            api = NodeAPI(chain=self.chain, mempool=self.mempool, metrics=self.metrics,
                          node_status=self._node_status, on_tx=self._gossip_tx, blobs=self.blobs,
                          admit_fraud_proof=self.intake.admit, snapshots=lambda: self.snapshots.kept)
            view = ConsensusChain(self.chain, self.mempool, self.key.public_key,
                                  lambda: int(time.time() * 1000), self.work.fetch_soon)
            self.sync = BlockSync(self.chain, self._after_finalize, self.work.fetch_soon)
            self.driver = ConsensusDriver(self.genesis.chain_id, self.key, view, self.guard,
                                          TIMEOUTS, self.genesis.consensus.block_interval_ms)
            app = web.Application(middlewares=[json_errors])
            app.add_routes(rpc_routes(api) + self.network.routes())
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            host, port = parse_host_port(self.listen)
            site = web.TCPSite(runner, host, port)
            await site.start()
            log.info("listening on http://%s", self.listen)
            connects = [asyncio.create_task(self.network.connect(p)) for p in self.peer_addresses]
            if self.home.config.peer_exchange:
                exchange = PeerExchange(self.network, self.home.data_dir / PEERS_FILE, list(self.peer_addresses))
                connects.append(asyncio.create_task(exchange.run(), name="peer exchange"))
            status_task = asyncio.create_task(self._status_loop())
            self._carry_out(self.driver.start())
            self.work.on_block()
            try:
                await stop.wait()
            finally:
                for task in [status_task, *connects]:
                    task.cancel()
                await asyncio.gather(status_task, *connects, return_exceptions=True)
                self._cancel_timers()
                self.intake.close()
                self.work.close()
                # a snapshot half written is not kept; a compaction needs the store open
                pending = [t for t in (self._snapshotting, self._compacting) if t is not None]
                if pending:
                    await asyncio.wait(pending)
                worker.close()
                await fetcher.close()
                await self.network.close()
                await runner.cleanup()
        finally:
            self.store.close()

    def _snapshot_soon(self, block: Block) -> None:
        """At a round's close, keep the state as a snapshot for nodes that state-sync: the
        entries copied here, the encoding and writing off the loop."""
        if self.sync.syncing or self._snapshotting is not None and not self._snapshotting.done():
            return
        state = self.chain.state
        self._snapshotting = asyncio.create_task(asyncio.to_thread(
            self.snapshots.take, dict(state.entries), state.tree, block.header.height, block.hash))

    def _head(self) -> tuple[int, bytes]:
        return self.chain.height, self.chain.head.block_hash

    def _node_status(self) -> NodeStatus:
        return NodeStatus(syncing=self.sync.syncing,
                          peers=self.network.peers(),
                          consensus_round=self.driver.consensus_round if self.driver is not None else None,
                          me=self.key.public_key, mining=self.mine,
                          work=self.work.progress if self.work is not None else None)

    def _blob_addresses(self) -> list[str]:
        """Where to look for blobs: every peer's HTTP address (the peer port serves both)."""
        known = list(self.peer_addresses)
        return known + [a for _, a in self.network.peers() if a not in known]

    def _submit(self, payload) -> None:
        """Sign payload as this node's next transaction, queue it and gossip it; a fraud
        proof once its replay is decided (it takes its nonce then)."""
        if isinstance(payload, FraudProof):
            self.intake.spawn(self._submit_fraud_proof(payload))
            return
        self._sign_and_queue(payload)

    async def _submit_fraud_proof(self, proof: FraudProof) -> None:
        try:
            shows_fraud = await self.intake.decide(self.key.public_key, proof)
        except MempoolError as exc:
            log.warning("could not queue our FraudProof: %s", exc)
            return
        self._sign_and_queue(proof, shows_fraud)

    def _sign_and_queue(self, payload, shows_fraud: bool | None = None, nonce: int | None = None) -> None:
        me = self.key.public_key
        if nonce is None:
            nonce = self.mempool.next_nonce(me, self.chain.state.account(me).nonce)
        tx = sign_tx(self.key, self.genesis.chain_id, nonce, payload, self.genesis.economics.min_tx_fee)
        try:
            self.mempool.add(tx, self.chain.state, self.genesis.chain_id, shows_fraud, own=True)
        except MempoolError as exc:
            log.warning("could not queue our %s: %s", type(payload).__name__, exc)
            return
        self._gossip_tx(tx)

    # -- consensus: the driver decides, the node carries out its actions

    def _carry_out(self, actions: list[DriverAction]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.network.send(action.peer, action.message)
                if isinstance(action.message, Vote) and action.message.validator == self.key.public_key:
                    self.steps.voted(action.message.body, time.monotonic())
            elif isinstance(action, SetTimer):
                loop = asyncio.get_running_loop()
                self._timers = [t for t in self._timers if t.when() > loop.time()]
                self._timers.append(loop.call_later(action.delay_ms / 1000, self._on_timer,
                                                    action.timer))
            elif isinstance(action, Finalized):
                self._after_finalize(action.block)
            elif isinstance(action, Evidence):
                log.warning("validator %s signed two conflicting votes at height %d",
                            action.first.validator.hex()[:16], action.first.body.height)
                self._report_equivocation(action.first, action.second)

    def _on_timer(self, timer: Timeout | NextHeight) -> None:
        self._carry_out(self.driver.on_timer(timer))

    def _on_peer_connected(self, peer: bytes) -> None:
        if self.driver is not None:
            self._carry_out(self.driver.peer_connected(peer))

    def _after_finalize(self, block: Block) -> None:
        self.mempool.remove_committed(self.chain.state)
        expired = self.mempool.expire(self.chain.height)
        if expired:
            log.info("dropped %d transactions that waited %d blocks", expired, EXPIRY_BLOCKS)
        self._fill_own_nonce_gaps()
        if self.schedule.is_close(block.header.height):
            self._snapshot_soon(block)
            if not self.archive:
                prune_forgotten_round(self.chain, self.blobs)
                self._prune_blocks()
            release_free_memory()  # a round's close frees its models and deltas: hand the pages back
        self.work.on_block()
        self._measure(block)
        log.info("finalized height %d %s with %d txs", block.header.height,
                 block.hash.hex()[:16], len(block.txs))

    def _measure(self, block: Block) -> None:
        metrics, header = self.metrics, block.header
        metrics.set("uponode_height", header.height)
        metrics.inc("uponode_blocks_finalized_total")
        metrics.observe("uponode_consensus_rounds_per_height", header.round)
        if self._previous_time_ms is not None:
            metrics.observe("uponode_block_interval_seconds", (header.time_ms - self._previous_time_ms) / 1000)
        self._previous_time_ms = header.time_ms
        for step, seconds in self.steps.committed(header.height, time.monotonic()):
            metrics.observe("uponode_consensus_step_seconds", seconds, {"step": step})

    def _count_traffic(self, direction: str, kind: str, size: int) -> None:
        name = "uponode_peer_bytes_received_total" if direction == "in" else "uponode_peer_bytes_sent_total"
        self.metrics.inc(name, size, {"type": kind})

    def _prune_blocks(self) -> None:
        """Blocks older than the retention window and the kept snapshots go, but the
        landmarks that chain following needs (node.state.retention.first_kept_block)."""
        new_base = first_kept_block(self.genesis.consensus, self.chain.height,
                                    [ref.height for ref in self.snapshots.kept])
        pruned = self.chain.prune_blocks(new_base)
        if pruned:
            log.info("pruned %d blocks below height %d (past the retention window)", pruned, new_base)
            if self._compacting is None or self._compacting.done():
                self._compactions += 1
                if self._compactions % REOPEN_EVERY_COMPACTIONS == 0:
                    self.store.reopen()  # here, with no thread on the store, to bound LevelDB's own logs
                self._compacting = asyncio.create_task(asyncio.to_thread(self.store.compact_pruned))

    def _fill_own_nonce_gaps(self) -> None:
        """A transaction of ours that no block will take (a fraud proof another prover beat,
        say) leaves a gap that holds back our later ones, audit reports among them: fill
        each gap with a transfer of 1 to ourselves, which costs only its fee."""
        me = self.key.public_key
        for nonce in self.mempool.gaps(me, self.chain.state.account(me).nonce):
            log.info("our transaction with nonce %d was dropped; filling its place so that our "
                     "later ones can be included", nonce)
            self._sign_and_queue(Transfer(to=me, amount=1), nonce=nonce)

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []

    # -- messages from peers

    async def _on_message(self, peer: bytes, message) -> None:
        if isinstance(message, (Proposal, Vote)):
            try:
                self._carry_out(self.driver.receive(peer, message))
            except ForgedMessage as exc:
                # a forged message costs its sender the peer and is never relayed
                raise InvalidPeerMessage(str(exc)) from None
        elif isinstance(message, TxMessage):
            self._accept_tx(message.tx, exclude=peer)
        elif isinstance(message, Status):
            request = self.sync.on_status(peer, message)
            if request is not None:
                self.network.send(peer, request)
        elif isinstance(message, GetBlocks):
            self.network.send(peer, self.sync.serve(message))
        elif isinstance(message, Blocks):
            try:
                step = self.sync.on_blocks(peer, message)
            except InvalidSyncedBlock as exc:
                raise InvalidPeerMessage(str(exc)) from None
            if step.advanced:
                self._carry_out(self.driver.synced())
            if step.next_request is not None:
                self.network.send(peer, step.next_request)
            if step.pruned and self._told_pruned != self.chain.height:
                self._told_pruned = self.chain.height
                log.warning("no peer ahead keeps blocks from height %d on: they pruned them past the "
                            "retention window; restart this node to begin from a snapshot, or give it an "
                            "archive peer (uponode start --archive)", self.chain.height + 1)

    async def _status_loop(self) -> None:
        while True:
            self.network.broadcast(Status(self.chain.height, self.chain.head.block_hash))
            self._carry_out(self.driver.tick(self.network.peer_keys()))
            self.sync.retry()  # a sync request unanswered for a period is asked again
            self.metrics.set("uponode_peers", len(self.network.peers()))
            self.metrics.set("uponode_consensus_messages", self.driver.held_messages())
            await asyncio.sleep(STATUS_INTERVAL_S)

    # -- transactions

    def _report_equivocation(self, first: Vote, second: Vote) -> None:
        """Put the evidence on chain: the ledger slashes the validator and pays us the bounty."""
        self._submit(DoubleSignEvidence(first, second))

    def _gossip_tx(self, tx: SignedTx) -> None:
        self.network.broadcast(TxMessage(tx))

    def _replay_soon(self, question: FraudQuestion) -> None:
        self.intake.replay_soon(question)

    def _accept_tx(self, tx: SignedTx, exclude: bytes) -> None:
        if isinstance(tx.body.payload, FraudProof):
            self.intake.offer(tx, lambda: self.network.broadcast(TxMessage(tx), exclude=exclude))
            return
        try:
            self.mempool.add(tx, self.chain.state, self.genesis.chain_id)
        except MempoolError:
            return  # already known, stale or invalid: not forwarded
        self.network.broadcast(TxMessage(tx), exclude=exclude)

