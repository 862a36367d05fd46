"""State sync: begin an empty node from a peer's recent snapshot instead of genesis.

The node asks its peers (their HTTP APIs) which snapshots they keep, and takes the
highest.  It follows the chain from genesis up to the snapshot's height without
executing it, from one committee-changing block to the next (node.verify.chain_follow:
bodies, commits, committee changes), so the header there and its state root are as
sure as the committee's signatures; the committee-changing blocks it passed are stored
with the state, so that it serves them in turn.  The snapshot's manifest must name
that block and that root; each chunk must hash to its place in the manifest and its
entries to their subtree root; the model the state records is fetched by its digest.
Then the state, the block and its commit begin the store in one write, and block sync
takes it on from there.

A snapshot that does not match is refused with one line naming what is wrong (the
manifest, a chunk, the model) and where it came from, and the next peer's snapshot is
tried; nothing a peer sends can stop the sync or get into the store unverified.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import aiohttp

from node.net.blob_fetch import MAX_BLOB_BYTES, fetch_blob
from node.net.rpc_client import AsyncRpcClient, RpcError, block_path, read_block_and_commit
from node.state.records import MODEL_KEY, ModelRecord
from node.state.snapshot import SnapshotError, SnapshotManifest, read_chunk
from node.state.snapshot_store import KEPT
from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.blocks import Block, CommitCertificate
from node.types.codec import DecodeError
from node.types.genesis import Genesis
from node.uPoW.state import blob_limit
from node.verify.chain_follow import ChainFollowError, FollowedChain

log = logging.getLogger("uponode.state_sync")

SNAPSHOTS_PATH = "/snapshots"
COMMITTEE_CHANGES_PATH = "/committee_changes"
# a longer list is a lie: the committee changes once an epoch at most, and once a double signer
MAX_COMMITTEE_CHANGES = 1_000_000
RETRY_S = 2.0
MAX_TRIES = 12  # per block and peer before the next peer is asked
RETRY_BLOCK_S = 0.25
OFFERS_PER_PEER = KEPT
PROBE_TIMEOUT_S = 3.0


@dataclasses.dataclass(frozen=True)
class Offer:
    peer: str  # host:port, HTTP and blobs
    height: int
    manifest: bytes


def read_offers(peer: str, reply: Any) -> list[Offer]:
    """GET /snapshots: the snapshots a peer keeps; RpcError if the reply does not read."""
    try:
        offers = [Offer(peer, item["height"], bytes.fromhex(item["manifest"])) for item in reply["snapshots"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RpcError(f"{peer}{SNAPSHOTS_PATH}: not a list of snapshots ({exc!r})") from None
    for offer in offers:
        if type(offer.height) is not int or not 1 <= offer.height < 1 << 63 or len(offer.manifest) != 32:
            raise RpcError(f"{peer}{SNAPSHOTS_PATH}: a snapshot needs a height of 1 or more and a "
                           f"32-byte manifest digest")
    return offers


async def gather_offers(clients: dict[str, AsyncRpcClient]) -> tuple[list[Offer], list[str]]:
    """Every peer's snapshots, asked at once (each peer's OFFERS_PER_PEER highest: what an
    honest node keeps, so a peer listing thousands costs no more), the highest first;
    and why the peers that gave none did not."""
    async def ask(peer: str, client: AsyncRpcClient) -> list[Offer] | str:
        try:
            listed = read_offers(peer, await client.get(SNAPSHOTS_PATH))
        except RpcError as exc:
            return str(exc)
        return sorted(listed, key=lambda o: -o.height)[:OFFERS_PER_PEER]
    answers = await asyncio.gather(*(ask(peer, client) for peer, client in clients.items()))
    offers = [o for answer in answers if isinstance(answer, list) for o in answer]
    return sorted(offers, key=lambda o: -o.height), [a for a in answers if isinstance(a, str)]


async def offered_height(peers: list[str], timeout_s: float = PROBE_TIMEOUT_S) -> int:
    """The highest snapshot any of peers offers now; 0 if none answers within timeout_s
    (peers starting at the same moment as this node, say)."""
    async with aiohttp.ClientSession() as session:
        offers, _ = await gather_offers({p: AsyncRpcClient(f"http://{p}", session, timeout_s) for p in peers})
    return max((o.height for o in offers), default=0)


class StateSync:
    def __init__(self, genesis: Genesis, store: ChainStore, blobs: BlobStore, peers: list[str]):
        self.genesis = genesis
        self.store = store
        self.blobs = blobs
        self.peers = peers

    async def run(self, passes: int | None = None) -> int | None:
        """Sync the store from the best snapshot a peer offers, retrying until one
        verifies; returns its height.  With passes, give up (None) after asking the
        peers that many times without a snapshot that verifies."""
        async with aiohttp.ClientSession() as session:
            clients = {peer: AsyncRpcClient(f"http://{peer}", session) for peer in self.peers}
            asked = 0
            while passes is None or asked < passes:
                asked += 1
                offers = await self._offers(clients)
                for offer in offers:
                    started = time.monotonic()
                    try:
                        await self._sync_from(offer, clients, session)
                    except SnapshotError as exc:
                        log.warning("state sync: the snapshot at height %d from %s is refused: %s",
                                    offer.height, offer.peer, exc)
                        continue
                    log.info("state sync: state at height %d from %s installed in %.1f s",
                             offer.height, offer.peer, time.monotonic() - started)
                    return offer.height
                log.info("state sync: no snapshot to sync from yet; asking again in %g s", RETRY_S)
                await asyncio.sleep(RETRY_S)
            return None

    async def _offers(self, clients: dict[str, AsyncRpcClient]) -> list[Offer]:
        offers, problems = await gather_offers(clients)
        for problem in problems:
            log.info("state sync: %s", problem)
        return offers

    def _first(self, peer: str) -> list[str]:
        """Every peer, peer first."""
        return [peer] + [p for p in self.peers if p != peer]

    async def _sync_from(self, offer: Offer, clients: dict[str, AsyncRpcClient],
                         session: aiohttp.ClientSession) -> None:
        # the snapshot first, while its peer still keeps it, each chunk checked against
        # the manifest; then the manifest against the chain
        sources = self._first(offer.peer)
        raw = await fetch_blob(session, sources, offer.manifest, MAX_BLOB_BYTES)
        if raw is None:
            raise SnapshotError(f"no peer serves its manifest {offer.manifest.hex()[:16]}")
        try:
            manifest = SnapshotManifest.decode(raw)
        except (DecodeError, ValueError) as exc:
            raise SnapshotError(f"the manifest does not decode: {exc}") from None
        if manifest.height != offer.height:
            raise SnapshotError(f"the manifest is for height {manifest.height}")
        manifest.check_shape()
        entries: dict[bytes, bytes] = {}
        for index, subtree in enumerate(manifest.subtrees):
            if not subtree.entries:
                continue
            chunk = await fetch_blob(session, sources, subtree.digest, MAX_BLOB_BYTES)
            if chunk is None:
                raise SnapshotError(f"no peer serves chunk {index} ({subtree.digest.hex()[:16]})")
            entries.update(read_chunk(manifest, index, chunk))
        block, commit, landmarks, is_landmark = await self._follow_to(offer.height, clients, offer.peer)
        if manifest.block_hash != block.hash:
            raise SnapshotError(f"the manifest names block {manifest.block_hash.hex()[:16]} at height "
                                f"{offer.height}, the chain has {block.hash.hex()[:16]}")
        if manifest.state_root != block.header.state_root:
            raise SnapshotError(f"the manifest's state root {manifest.state_root.hex()[:16]} is not the one "
                                f"in the chain's header at height {offer.height}, "
                                f"{block.header.state_root.hex()[:16]}")
        await self._fetch_model(entries, sources, session)
        self.store.install_snapshot(entries, manifest.state_root, offer.height, block.hash, block.encode(),
                                    commit.encode(), bytes.fromhex(self.genesis.hash), landmarks, is_landmark)

    async def _fetch_model(self, entries: dict[bytes, bytes], sources: list[str],
                           session: aiohttp.ClientSession) -> None:
        """The model the state records, by its digest (which the state root commits to)."""
        try:
            model = ModelRecord.decode(entries[MODEL_KEY])
        except (KeyError, DecodeError, ValueError):
            raise SnapshotError("the state holds no model record") from None
        if self.blobs.has(model.root.hex()):
            return
        blob = await fetch_blob(session, sources, model.root, blob_limit(self.genesis))
        if blob is None:
            raise SnapshotError(f"no peer serves the model {model.root.hex()[:16]} of round {model.round}")
        self.blobs.put(blob)

    async def _follow_to(self, height: int, clients: dict[str, AsyncRpcClient],
                         peer: str) -> tuple[Block, CommitCertificate, dict[int, tuple[bytes, bytes]], bool]:
        """Follow the chain from genesis to height by its committee changes, as peer lists
        them: the block there and its commit, the landmark blocks passed (height -> block,
        commit encodings) and whether the block at height is one too.  Each block is
        asked of peer first, then of the others."""
        listed = await self._committee_changes(clients[peer], height)
        followed, landmarks = FollowedChain(self.genesis), {}
        for landmark in [h for h in listed if h < height] + [height]:
            block, commit = await self._fetch_block(landmark, clients, peer)
            try:
                followed.verify_ahead(block, commit)
            except ChainFollowError as exc:
                raise SnapshotError(f"following the chain: {exc} (from {peer})") from None
            before = followed.advance(block)
            if followed.committee != before and landmark < height:
                landmarks[landmark] = (block.encode(), commit.encode())
        return block, commit, landmarks, followed.committee != before

    async def _committee_changes(self, client: AsyncRpcClient, upto: int) -> list[int]:
        """The committee-changing heights up to upto that the peer lists, in order."""
        try:
            reply = await client.get(COMMITTEE_CHANGES_PATH)
            heights = reply["heights"]
            if not isinstance(heights, list) or len(heights) > MAX_COMMITTEE_CHANGES or any(
                    type(h) is not int or not 1 <= h < 1 << 63 for h in heights):
                raise ValueError(f"not a list of at most {MAX_COMMITTEE_CHANGES} heights")
        except (RpcError, KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{client.base_url}{COMMITTEE_CHANGES_PATH}: {exc}") from None
        return sorted({h for h in heights if h <= upto})

    async def _fetch_block(self, height: int, clients: dict[str, AsyncRpcClient],
                           first: str) -> tuple[Block, CommitCertificate]:
        """The block at height and its commit, from first or else the next peer that has it."""
        problems = []
        for name in self._first(first):
            client = clients[name]
            for _ in range(MAX_TRIES):
                try:
                    raw, commit = read_block_and_commit(client.base_url,
                                                        await client.get(block_path(height)))
                    return Block.decode(raw), CommitCertificate.decode(commit)
                except RpcError as exc:
                    if exc.status == 429:  # over the peer's rate: it comes within a block or two
                        await asyncio.sleep(RETRY_BLOCK_S)
                        continue
                    problems.append(str(exc))  # pruned, or begun from a snapshot above it
                    break
                except (DecodeError, ValueError) as exc:
                    problems.append(f"{name}: block {height} does not decode: {exc}")
                    break
        raise SnapshotError(f"no peer serves block {height}: {'; '.join(problems)[:300]}")
