"""`uponode audit`: the light-audit node.

It keeps no chain state.  It follows the chain block by block from full nodes' HTTP
APIs, checks that each block links to the one before and that its commit (carried
by the next block) holds precommits of more than 2/3 of the committee's power,
which it tracks from the genesis and the round closes (node.verify.chain_follow).  From the verified blocks it
learns the rounds' commitments, auditors, model roots and challenge blocks, so it
derives its own audit assignments exactly as the ledger does, fetches the
challenged checkpoints, re-executes them on the CPU, and submits signed audit
reports and fraud proofs.  A fraud proof goes with the checkpoint it starts from
(POST /fraud_proofs): its miner, having served it once, may withhold it from
everyone else, and the validators need it to decide the proof.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any, Callable, TypeVar

import aiohttp

from node.net.blob_fetch import BlobFetcher
from node.net.rpc_client import (FRAUD_PROOFS_PATH, TXS_PATH, AccountReply, AsyncRpcClient, RpcError,
                                 account_path, block_path, encode_fraud_proof_upload, read_account,
                                 read_block)
from node.types.blocks import Block
from node.types.codec import DecodeError
from node.storage.home import NodeHome
from node.state.records import ChallengeRecord
from node.storage.blobstore import BlobStore
from node.types.transactions import (Bond, EvidenceDispute, FraudProof, RegisterAuditor,
                                     SignedTx, Transfer, WithheldClaim, WorkCommitment, sign_tx)
from node.uPoW.data import UnitStream
from node.uPoW.model_state import genesis_model_blob
from node.uPoW.rounds import RoundSchedule
from node.uPoW.state import blob_limit
from node.uPoW.unit_compute import UnitCompute
from node.verify.auditor import Auditor, assigned_tasks, prune_unit_blobs
from node.verify.chain_follow import ChainFollowError, FollowedChain

log = logging.getLogger("uponode.light")

POLL_S = 0.5
ALREADY_PROVEN = "already_proven"  # the ledger's reason for a proof of a unit proven before
REQUEST_TIMEOUT_S = 10.0
# a full node answers a fraud proof once it has replayed it, perhaps behind other compute
FRAUD_PROOF_TIMEOUT_S = 120.0
# a gap in this auditor's pending nonces lasting this long is a dropped transaction, not
# one still gossiping between the full nodes
NONCE_GAP_S = 5.0
_Read = TypeVar("_Read")


@dataclasses.dataclass
class RoundView:
    start_hash: bytes | None = None
    eligible: set[bytes] = dataclasses.field(default_factory=set)  # at the challenge block
    challenge: ChallengeRecord | None = None  # the ledger's record, rebuilt from the blocks
    commitments: list[tuple[bytes, int, WorkCommitment]] = dataclasses.field(default_factory=list)
    # (miner, unit, segment, claimer or disputed auditor) of each withheld claim and dispute:
    # units open to a fallback audit
    claims: list[tuple[bytes, int, int, bytes]] = dataclasses.field(default_factory=list)


def _read_block(url: str, reply: Any) -> Block:
    try:
        return Block.decode(read_block(url, reply))
    except DecodeError as exc:
        raise RpcError(f"{url}: the block does not decode: {exc}") from None


class LightAuditor:
    """Follows the chain and audits through the full nodes named in peers (host:port).
    Nothing a full node answers stops it: a peer that fails, sends what does not read
    or a block that does not verify is logged (once per problem), the next peer is
    asked, and the request is retried at the next poll."""

    def __init__(self, home: NodeHome, peers: list[str]):
        self.genesis = home.genesis
        self.key = home.key
        self.peers = peers
        self.schedule = RoundSchedule.from_genesis(self.genesis)
        self.blobs = BlobStore(home.blobs_dir)
        self.blobs.put(genesis_model_blob(self.genesis))
        self.fetcher = BlobFetcher(self.blobs)
        self.compute: UnitCompute | None = None
        self.followed = FollowedChain(self.genesis)
        self.auditors: set[bytes] = set()
        self.rounds: dict[int, RoundView] = {0: RoundView(start_hash=self.followed.head_hash)}
        self.nonce: int | None = None
        self._confirmed: int | None = None  # the committed nonce, as last read
        self._gap: tuple[int, float] | None = None  # a nonce missing from the pools, since when
        self.registered = False
        self.auditor: Auditor | None = None
        self.reported: set[tuple[int, bytes, int]] = set()  # units audited and reported
        self._outbox: list = []  # payloads the auditor produced, sent between polls
        self._next: tuple[str, Block] | None = None  # block height+1 and its peer, if fetched
        self._clients: list[tuple[str, AsyncRpcClient]] = []  # one per peer, while running
        self._first = 0  # the peer asked first: moves on past one whose block did not verify
        # the last problem logged per peer and request (blocks, accounts, txs): a peer that
        # stays down or wrong is logged once, not at every poll
        self._trouble: dict[tuple[str, str], str] = {}

    # -- talking to full nodes

    def _in_turn(self) -> list[tuple[str, AsyncRpcClient]]:
        return self._clients[self._first:] + self._clients[:self._first]

    def _failed(self, peer: str, request: str, problem: str) -> None:
        if self._trouble.get((peer, request)) != problem:
            self._trouble[(peer, request)] = problem
            log.warning("full node %s: %s", peer, problem)

    def _answered(self, peer: str, request: str) -> None:
        if self._trouble.pop((peer, request), None) is not None:
            log.info("full node %s answers %s requests again", peer, request)

    async def _ask(self, request: str, path: str,
                   read: Callable[[str, Any], _Read]) -> tuple[str, _Read] | None:
        """(peer, read(url, reply)) from the first peer whose reply to GET path reads;
        request names the kind of request in the log."""
        for peer, client in self._in_turn():
            try:
                value = read(client.base_url + path, await client.get(path))
            except RpcError as exc:
                if exc.status == 404 and request == "blocks" and await self._pruned(client):
                    self._failed(peer, request, f"{exc}: it pruned the blocks this auditor still has to "
                                                f"follow (a light auditor follows from genesis: point it at "
                                                f"an archive node, uponode start --archive)")
                elif exc.status == 404:  # a block not made yet: routine at the head
                    log.debug("full node %s: %s", peer, exc)
                else:
                    self._failed(peer, request, str(exc))
                continue
            return peer, value
        return None

    async def _pruned(self, client: AsyncRpcClient) -> bool:
        """Whether the full node keeps no header at the next height to follow any more
        (a 404 below its first kept block), rather than not having made it yet."""
        height = self.followed.height + 1
        try:
            await client.get(f"/headers?from={height}&to={height}")
        except RpcError as exc:
            return exc.status == 404
        return False

    async def _account(self) -> AccountReply | None:
        answer = await self._ask("accounts", account_path(self.key.public_key), read_account)
        if answer is None:
            return None
        self._answered(answer[0], "accounts")
        return answer[1]

    async def _post_tx(self, tx: SignedTx) -> str | None:
        """POST tx to the first full node that takes it; None if accepted, else the errors.
        A fraud proof goes with its start checkpoint, if this auditor still holds it."""
        errors = []  # each node's refusal, or why it could not be reached
        payload = tx.body.payload
        start = (self.blobs.get(payload.start_hash.hex())
                 if isinstance(payload, FraudProof) and self.blobs.has(payload.start_hash.hex()) else None)
        for peer, client in self._in_turn():
            try:
                if start is None:
                    await client.post_text(TXS_PATH, tx.encode().hex())
                else:
                    await client.post_bytes(FRAUD_PROOFS_PATH, encode_fraud_proof_upload(tx, start),
                                            FRAUD_PROOF_TIMEOUT_S)
                self._answered(peer, "txs")
                return None
            except RpcError as exc:
                errors.append(str(exc))
                if exc.status is None:
                    self._failed(peer, "txs", str(exc))
        return "; ".join(errors) or "no full node answered"

    async def _submit(self, payload) -> str | None:
        """Sign and send payload; None if a full node took it, else why not."""
        if self.nonce is None:
            account = await self._account()
            if account is None:
                log.warning("cannot read this auditor's account; %s not sent", type(payload).__name__)
                return "no account"
            # counting what it has pending: the reports sent before a refusal are still on their way
            self.nonce = account.pending_nonce
        tx = sign_tx(self.key, self.genesis.chain_id, self.nonce, payload, self.genesis.economics.min_tx_fee)
        error = await self._post_tx(tx)
        if error is None:
            self.nonce += 1
            log.info("sent %s (nonce %d)", type(payload).__name__, tx.body.nonce)
            return None
        self.nonce = None  # re-read on the next send
        log.warning("%s refused: %s", type(payload).__name__, error)
        return error

    async def _send_outbox(self) -> None:
        """Send what the auditor produced, fraud proofs last.  A fraud proof no full node
        took (each may be busy deciding others) is kept for the next poll while its audit
        window is open, unless the unit is proven already (another prover was first).

        A proof a full node took can still lose its race at the next block (the last
        segment is in every draw, so two auditors prove a faked one): the pools drop it,
        and its nonce becomes a gap that holds back every later transaction of this
        auditor.  Sent after the reports, it holds back none of theirs; and the nonce is
        read again at the send after a proof, so that a batch sent once the pools have
        dropped it starts at the gap."""
        kept = []
        self._outbox.sort(key=lambda payload: isinstance(payload, FraudProof))  # stable
        while self._outbox:
            payload = self._outbox.pop(0)
            error = await self._submit(payload)
            if not isinstance(payload, FraudProof):
                continue
            self.nonce = None
            if (error is not None and ALREADY_PROVEN not in error
                    and self.followed.height + 1 in self.schedule.audit_window(payload.round)):
                kept.append(payload)
        self._outbox = kept

    async def _fill_nonce_gap(self) -> None:
        """A transaction of ours that no block will take (a fraud proof another prover
        beat, sent while the next batch was signed) leaves a gap: the pools' run of our
        pending transactions stops short of the nonce we sign next, and every later one
        waits behind it.  A gap that lasts NONCE_GAP_S is filled with a transfer of 1 to
        ourselves, which costs only its fee."""
        if self.nonce is None or self._confirmed == self.nonce:
            return  # the next send reads the nonce again, or nothing of ours is pending
        account = await self._account()
        if account is None:
            return
        self._confirmed = account.nonce
        if account.pending_nonce >= self.nonce:
            self._gap = None
            return
        now = time.monotonic()
        if self._gap is None or self._gap[0] != account.pending_nonce:
            self._gap = (account.pending_nonce, now)
            return
        if now - self._gap[1] < NONCE_GAP_S:
            return
        nonce, self._gap = account.pending_nonce, None
        tx = sign_tx(self.key, self.genesis.chain_id, nonce, Transfer(to=self.key.public_key, amount=1),
                     self.genesis.economics.min_tx_fee)
        error = await self._post_tx(tx)
        if error is None:
            log.info("our transaction with nonce %d was dropped; filled its place so that our "
                     "later ones can be included", nonce)
        else:
            log.warning("filling the dropped nonce %d was refused: %s", nonce, error)

    # -- following the chain

    def _apply(self, block: Block) -> None:
        """Learn what the auditor needs from a verified block."""
        height = block.header.height
        for tx in block.txs:
            payload = tx.body.payload
            if isinstance(payload, RegisterAuditor):
                self.auditors.add(tx.body.sender)
            elif isinstance(payload, WorkCommitment):
                self._round(payload.round).commitments.append((tx.body.sender, payload.unit, payload))
            elif isinstance(payload, WithheldClaim):
                self._round(payload.round).claims.append(
                    (payload.miner, payload.unit, payload.segment, tx.body.sender))
            elif isinstance(payload, EvidenceDispute):
                self._round(payload.round).claims.append(
                    (payload.miner, payload.unit, payload.segment, payload.auditor))
        proposed_under = self.followed.advance(block)
        round_ = self.schedule.round_of(height)
        view = self._round(round_)
        if height == self.schedule.challenge_height(round_):
            # the ledger's snapshot: committee and auditors as this block leaves them
            view.eligible = self.auditors | {m.pub_key for m in self.followed.committee.members}
        elif height > self.schedule.challenge_height(round_):
            # the ledger's choosers, with the committee this block was proposed under
            if height == self.schedule.challenge_height(round_) + 1:
                view.challenge = ChallengeRecord.snapshot(view.eligible, proposed_under)
            if view.challenge is not None:
                view.challenge = view.challenge.after_block(self.genesis.chain_id, block.last_commit,
                                                            block.header.proposer, proposed_under)
        if height == self.schedule.close_height(round_):
            self._round(round_ + 1).start_hash = block.hash
            # the round's audits are over: what they fetched need not stay here, but for
            # the model the next round trains from
            done = self.rounds.pop(round_)
            prune_unit_blobs(self.blobs, [c for _, _, c in done.commitments],
                             {close.model_root for close in block.close})

    def _round(self, round_: int) -> RoundView:
        return self.rounds.setdefault(round_, RoundView())

    async def _follow(self) -> bool:
        """Verify and apply the next block; False when there is none yet, or none that
        verifies (then the next peer is asked first)."""
        block = self._next or await self._ask("blocks", block_path(self.followed.height + 1), _read_block)
        carrier = (await self._ask("blocks", block_path(self.followed.height + 2), _read_block)
                   if block is not None else None)
        if block is None or carrier is None:
            self._next = block
            return False
        (peer, verified), (carrier_peer, carrier_block) = block, carrier
        try:
            self.followed.verify(verified, carrier_block)
        except ChainFollowError as exc:
            self._next = None
            commit_from = f" (the commit from {carrier_peer})" if carrier_peer != peer else ""
            self._failed(peer, "blocks", f"{exc}{commit_from}")
            self._first = (self.peers.index(peer) + 1) % len(self.peers)
            return False
        self._answered(peer, "blocks")
        self._answered(carrier_peer, "blocks")
        self._apply(verified)
        self._next = carrier  # the carrier is the next block to verify: fetched once
        return True

    # -- auditing

    async def _replay(self, model_root: bytes, stream: UnitStream, segment: int, start: bytes,
                      committed_delta: bytes, carried_leaf: bytes):
        return self.compute.replay(model_root, stream, segment, start, committed_delta, carried_leaf)

    async def _fetch(self, digest: bytes) -> bool:
        return await self.fetcher.ensure(digest, self.peers, blob_limit(self.genesis))

    async def _audit_round(self, round_: int) -> None:
        view = self.rounds.get(round_)
        if view is None or view.challenge is None or view.start_hash is None:
            return
        if self.followed.height >= self.schedule.close_height(round_) - 1:
            return  # the window has closed (the closing block takes no audits)
        tasks = assigned_tasks(self.genesis, self.key.public_key, round_, view.start_hash, view.challenge,
                               view.commitments, view.claims)
        may_claim = self.followed.height + 1 in self.schedule.claim_window(round_)
        for task in tasks:
            if (task.round, task.miner, task.unit) in self.reported:
                continue
            if self.compute is None:
                self.compute = UnitCompute(self.genesis, self.blobs)
                self.auditor = Auditor(self.genesis, self.key.public_key, self.blobs, self._fetch,
                                       self._replay, self._queue)
            started = asyncio.get_running_loop().time()
            try:
                reported = await self.auditor.audit(task, may_claim)
            except Exception as exc:  # one unit's trouble (a malformed blob) must not stop the rest
                log.error("%s: audit failed: %s", task.name, exc)
                continue
            if reported:
                self.reported.add((task.round, task.miner, task.unit))
                log.info("%s: audited %d segments, cost %.2f s with the fetches", task.name,
                         len(task.segments), asyncio.get_running_loop().time() - started)

    def _queue(self, payload) -> None:
        self._outbox.append(payload)

    async def _register(self, at_head: bool) -> None:
        if self.registered or not at_head:
            return
        if self.key.public_key in self.auditors:
            self.registered = True
            log.info("registered as an auditor")
            return
        account = await self._account()
        if account is None:
            return
        missing = self.genesis.economics.min_auditor_bond - account.bond
        if missing > 0:
            await self._submit(Bond(amount=missing))
        await self._submit(RegisterAuditor())
        self.registered = True  # confirmed when the registration shows up in a block

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            self._clients = [(peer, AsyncRpcClient(f"http://{peer}", session, REQUEST_TIMEOUT_S))
                             for peer in self.peers]
            try:
                while not stop.is_set():
                    advanced = await self._follow()
                    if not advanced:
                        await self._register(at_head=True)
                        await self._audit_round(self.schedule.round_of(self.followed.height + 1))
                        await self._send_outbox()
                        await self._fill_nonce_gap()
                        try:
                            await asyncio.wait_for(stop.wait(), POLL_S)
                        except asyncio.TimeoutError:
                            pass
            finally:
                await self.fetcher.close()
