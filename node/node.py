"""The full node: wiring of store, chain, mempool, consensus, peers and HTTP API.

One aiohttp server serves the HTTP API and the peer WebSocket.  The consensus core
is sans-I/O; this module is its driver: it turns the core's actions into signed
messages on the wire (after the double-sign guard's synced write), timers, and
finalized blocks.  A node that learns of a higher head from a peer's status
block-syncs, checking every commit, then joins consensus at the next height.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from node.net.blob_fetch import BlobFetcher
from node.types.blocks import Block, CommitCertificate
from node.types.votes import Vote
from node.state.chain import Chain, InvalidBlock
from node.consensus.core import (Broadcast, ConsensusCore, Decide, Evidence, Lock, RecordLock,
                                 RecordSigned, ScheduleTimeout, SignedStep, Step, Timeout,
                                 TimeoutConfig)
from node.consensus.guard import SignGuard
from node.types.proposal import Proposal
from node.storage.home import GENESIS_FILE, NodeHome
from node.state.mempool import Mempool, MempoolError
from node.rpc.metrics import Metrics
from node.net.p2p import InvalidPeerMessage, PeerNetwork
from node.work.round_work import RoundWork
from node.rpc.rounds_view import float32
from node.rpc.api import NodeAPI, json_errors, rpc_routes
from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.transactions import DoubleSignEvidence, SignedTx, sign_tx
from node.uPoW.model_state import genesis_model_blob
from node.uPoW.backends import backend_named
from node.uPoW.oracle import WorkUnavailable
from node.uPoW.rounds import RoundSchedule
from node.uPoW.unit_compute import ComputeWorker
from node.uPoW.work_oracle import BlobWorkOracle
from node.net.wire import (MAX_FRAME_BYTES, Blocks, BlockWithCommit, GetBlocks, Status, TxMessage,
                       decode_message, encode_message)

log = logging.getLogger("uponode.node")

STATUS_INTERVAL_S = 1.0
SYNC_BATCH = 50
MEMPOOL_TXS = 20_000
GUARD_FILE = "sign_guard"
# Tendermint's defaults: timeouts only matter when a round fails, and they must leave
# a loaded node time to build, send and check a full block
TIMEOUTS = TimeoutConfig(propose_ms=3000, prevote_ms=1000, precommit_ms=1000, delta_ms=500)


class Node:
    def __init__(self, home: NodeHome, listen: str, peers: tuple[str, ...], mine: bool = True,
                 backend: str = "cpu"):
        self.home = home
        self.mine = mine
        self.backend = backend  # where training, replays and round closes compute
        self.genesis = home.genesis
        self.key = home.key
        self.listen = listen
        self.peer_addresses = peers
        self.store: ChainStore | None = None
        self.chain: Chain | None = None
        self.mempool = Mempool(MEMPOOL_TXS, self.genesis.consensus.max_tx_bytes)
        self.metrics = Metrics()
        self.guard = SignGuard(home.data_dir / GUARD_FILE)
        self.core: ConsensusCore | None = None
        self.pending: list[Proposal | Vote] = []  # messages for a height we have not reached
        self.best_peer_height = 0
        self.syncing_from: bytes | None = None
        self.network = PeerNetwork(self.key, self.genesis.chain_id, bytes.fromhex(self.genesis.hash),
                                   listen, self._head, self._on_message)
        self._timers: list[asyncio.TimerHandle] = []
        self._next_height: asyncio.TimerHandle | None = None
        self.schedule = RoundSchedule.from_genesis(self.genesis)
        self.blobs = BlobStore(home.blobs_dir)
        self.blobs.put(genesis_model_blob(self.genesis))  # what round 0 trains from
        self.oracle = BlobWorkOracle(self.genesis, self.blobs, backend_named(backend))
        self.work: RoundWork | None = None

    # -- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self.store = ChainStore.open(self.home.data_dir / "chain")
        try:
            self.chain = Chain(self.genesis, self.store, self.oracle)
            log.info("chain %s at height %d; training, replays and round closes on the %s "
                     "backend", self.genesis.chain_id, self.chain.height, self.backend)
            api = NodeAPI(chain=self.chain, mempool=self.mempool, metrics=self.metrics,
                          status_extra=self._status_extra, on_tx=self._gossip_tx, blobs=self.blobs)
            worker = ComputeWorker(self.home.path / GENESIS_FILE, self.home.blobs_dir, self.backend)
            fetcher = BlobFetcher(self.blobs)
            self.work = RoundWork(self.genesis, self.chain, self.key.public_key, self.mine, worker,
                                  fetcher, self._blob_addresses, self._submit)
            app = web.Application(middlewares=[json_errors])
            app.add_routes(rpc_routes(api) + self.network.routes())
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            host, _, port = self.listen.rpartition(":")
            site = web.TCPSite(runner, host.strip("[]"), int(port))
            await site.start()
            log.info("listening on http://%s", self.listen)
            connects = [asyncio.create_task(self.network.connect(p)) for p in self.peer_addresses]
            status_task = asyncio.create_task(self._status_loop())
            self._enter_height(self.chain.height + 1)
            self.work.on_block()
            try:
                await stop.wait()
            finally:
                for task in [status_task, *connects]:
                    task.cancel()
                self._cancel_timers()
                self.work.close()
                worker.close()
                await fetcher.close()
                await self.network.close()
                await runner.cleanup()
        finally:
            self.store.close()

    def _head(self) -> tuple[int, bytes]:
        return self.chain.height, self.chain.head.block_hash

    def _status_extra(self) -> dict:
        height = self.chain.height
        model = self.chain.state.model()
        # the round and phase of the block being decided next
        return {"syncing": self.best_peer_height > height + 1,
                "peers": [{"key": k, "address": a} for k, a in self.network.peers()],
                "consensus_round": self.core.round if self.core is not None else None,
                "round": self.schedule.round_of(height + 1),
                "phase": self.schedule.phase(height + 1),
                "model": {"round": model.round, "root": model.root.hex(),
                          "eval_loss": float32(model.eval_loss_bits)}}

    def _blob_addresses(self) -> list[str]:
        """Where to look for blobs: every peer's HTTP address (the peer port serves both)."""
        known = list(self.peer_addresses)
        return known + [a for _, a in self.network.peers() if a not in known]

    def _submit(self, payload) -> None:
        """Sign payload as this node's next transaction, queue it and gossip it."""
        me = self.key.public_key
        nonce = self.mempool.next_nonce(me, self.chain.state.account(me).nonce)
        tx = sign_tx(self.key, self.genesis.chain_id, nonce, payload)
        try:
            self.mempool.add(tx, self.chain.state, self.genesis.chain_id)
        except MempoolError as exc:
            log.warning("could not queue our %s: %s", type(payload).__name__, exc)
            return
        self._gossip_tx(tx)

    # -- consensus driver

    def _enter_height(self, height: int) -> None:
        self._cancel_timers()
        committee = self.chain.state.committee()
        validators = [(m.pub_key, m.power) for m in committee.members]
        seated = any(k == self.key.public_key for k, _ in validators)
        last = self.guard.load()
        lock = self.guard.load_lock()
        signed_here = last is not None and last[0] == height
        self.core = ConsensusCore(
            chain_id=self.genesis.chain_id, height=height, validators=validators,
            key=self.key if seated else None, timeouts=TIMEOUTS,
            build_block=self._build_block, check_block=self._check_block,
            last_signed=SignedStep(last[0], last[1], Step(last[2])) if last is not None else None,
            lock=Lock(lock[0], Block.decode(lock[1])) if lock is not None else None)
        self._process(self.core.start())
        if signed_here:
            # a restart within this height: what we signed last may never have left the
            # process, and the core will not sign that step again, so send it once more
            message = decode_message(last[3])
            self._process(self.core.receive(message))
            self.network.broadcast(message)
        pending, self.pending = self.pending, []
        for message in pending:
            self._deliver(message)

    def _build_block(self, height: int, round_: int) -> Block | None:
        txs = self.mempool.reap(self.genesis.consensus.max_block_txs)
        try:
            block, refused = self.chain.propose(txs, self.key.public_key, int(time.time() * 1000),
                                                round_)
        except WorkUnavailable as exc:
            log.warning("cannot propose height %d yet: %s", height, exc)
            self.work.fetch_soon(exc.digest)
            return None
        for tx, error in refused:
            self.mempool.discard(tx.hash)
            log.info("left out tx %s: %s", tx.hash.hex()[:16], error)
        return block

    def _check_block(self, block: Block) -> bool:
        try:
            self.chain.check_block(block)
            return True
        except InvalidBlock as exc:
            log.warning("refusing proposed block at height %d: %s", block.header.height, exc)
            return False
        except WorkUnavailable as exc:
            log.warning("cannot check the block at height %d yet: %s", block.header.height, exc)
            self.work.fetch_soon(exc.digest)
            return False

    def _process(self, actions) -> None:
        for index, action in enumerate(actions):
            if isinstance(action, RecordSigned):
                # the signed message is the Broadcast that follows; it is written with
                # the step, synced, before it leaves
                message = next(a.message for a in actions[index:] if isinstance(a, Broadcast))
                s = action.step
                self.guard.record(s.height, s.round, s.kind, encode_message(message))
            elif isinstance(action, RecordLock):
                self.guard.record_lock(action.lock.round, action.lock.block.encode())
            elif isinstance(action, Broadcast):
                self.network.broadcast(action.message)
            elif isinstance(action, ScheduleTimeout):
                loop = asyncio.get_running_loop()
                self._timers.append(loop.call_later(action.delay_ms / 1000, self._on_timeout,
                                                    action.timeout))
            elif isinstance(action, Decide):
                self._decide(action.block, action.certificate)
                return  # the core of this height is done
            elif isinstance(action, Evidence):
                log.warning("validator %s signed two conflicting votes at height %d",
                            action.first.validator.hex()[:16], action.first.body.height)
                self._report_equivocation(action.first, action.second)

    def _on_timeout(self, timeout: Timeout) -> None:
        if self.core is not None and timeout.height == self.core.height:
            self._process(self.core.on_timeout(timeout))

    def _decide(self, block: Block, certificate: CommitCertificate) -> None:
        try:
            self.chain.finalize(block, certificate)
        except InvalidBlock as exc:
            log.error("decided block at height %d does not finalize: %s", block.header.height, exc)
            return
        except WorkUnavailable as exc:
            # decided by the committee while this node lacks a blob to re-check it: the
            # block arrives again by block sync once the blob is here
            log.warning("decided block at height %d waits for a blob: %s", block.header.height, exc)
            self.work.fetch_soon(exc.digest)
            return
        self._after_finalize(block)
        # the next height starts after the block interval, as Tendermint's timeout_commit
        self.core = None
        loop = asyncio.get_running_loop()
        self._next_height = loop.call_later(self.genesis.consensus.block_interval_ms / 1000,
                                            self._enter_height, self.chain.height + 1)

    def _after_finalize(self, block: Block) -> None:
        self.mempool.remove_committed(self.chain.state)
        self.work.on_block()
        self.metrics.set("uponode_height", self.chain.height)
        self.metrics.inc("uponode_blocks_finalized_total")
        log.info("finalized height %d %s with %d txs", block.header.height,
                 block.hash.hex()[:16], len(block.txs))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        if self._next_height is not None:
            self._next_height.cancel()
            self._next_height = None

    # -- messages from peers

    def _deliver(self, message: Proposal | Vote) -> None:
        height = _height_of(message)
        if self.core is not None and height == self.core.height:
            self._process(self.core.receive(message))
        elif height > self.chain.height:
            self.pending.append(message)
            del self.pending[:-1000]  # bounded: a peer cannot fill our memory

    async def _on_message(self, peer: bytes, message) -> None:
        if isinstance(message, (Proposal, Vote)):
            # checked before it is relayed, so a forged message costs its sender the peer
            # and is never amplified
            if not message.signature_valid(self.genesis.chain_id):
                raise InvalidPeerMessage(f"{type(message).__name__} with a bad signature")
            self._deliver(message)
            if _height_of(message) > self.chain.height:
                self.network.broadcast(message, exclude=peer)
        elif isinstance(message, TxMessage):
            self._accept_tx(message.tx, exclude=peer)
        elif isinstance(message, Status):
            self.best_peer_height = max(self.best_peer_height, message.height)
            if message.height > self.chain.height and self.syncing_from is None:
                self.syncing_from = peer
                self.network.send(peer, GetBlocks(self.chain.height + 1, SYNC_BATCH))
        elif isinstance(message, GetBlocks):
            self.network.send(peer, Blocks(self._blocks_from(message.from_height, message.count)))
        elif isinstance(message, Blocks):
            self._apply_synced(peer, message)

    def _blocks_from(self, start: int, count: int) -> tuple[BlockWithCommit, ...]:
        """Up to count finalized blocks from start, as many as fit half a frame."""
        items, size = [], 0
        for height in range(start, min(start + min(count, SYNC_BATCH), self.chain.height + 1)):
            block = self.store.block(height)
            commit = self.store.commit(height)
            size += len(block) + len(commit)
            if items and size > MAX_FRAME_BYTES // 2:
                break
            items.append(BlockWithCommit(Block.decode(block), CommitCertificate.decode(commit)))
        return tuple(items)

    def _apply_synced(self, peer: bytes, message: Blocks) -> None:
        if peer != self.syncing_from:
            return
        self.syncing_from = None
        advanced = False
        for item in message.items:
            if item.block.header.height <= self.chain.height:
                continue
            try:
                self.chain.finalize(item.block, item.commit)
            except InvalidBlock as exc:
                raise InvalidPeerMessage(f"synced block {item.block.header.height}: {exc}") from None
            except WorkUnavailable as exc:
                self.work.fetch_soon(exc.digest)
                break
            self._after_finalize(item.block)
            advanced = True
        if advanced:
            self._enter_height(self.chain.height + 1)
            if self.best_peer_height > self.chain.height:
                self.syncing_from = peer
                self.network.send(peer, GetBlocks(self.chain.height + 1, SYNC_BATCH))

    async def _status_loop(self) -> None:
        while True:
            self.network.broadcast(Status(self.chain.height, self.chain.head.block_hash))
            self.syncing_from = None  # a sync request unanswered for a period is retried
            self.metrics.set("uponode_peers", len(self.network.peers()))
            await asyncio.sleep(STATUS_INTERVAL_S)

    # -- transactions

    def _report_equivocation(self, first: Vote, second: Vote) -> None:
        """Put the evidence on chain: the ledger slashes the validator and pays us the bounty."""
        self._submit(DoubleSignEvidence(first, second))

    def _gossip_tx(self, tx: SignedTx) -> None:
        self.network.broadcast(TxMessage(tx))

    def _accept_tx(self, tx: SignedTx, exclude: bytes) -> None:
        try:
            self.mempool.add(tx, self.chain.state, self.genesis.chain_id)
        except MempoolError:
            return  # already known, stale or invalid: not forwarded
        self.network.broadcast(TxMessage(tx), exclude=exclude)


def _height_of(message: Proposal | Vote) -> int:
    return message.height if isinstance(message, Proposal) else message.body.height
