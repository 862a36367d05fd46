"""Block sync, sans-I/O: a node that is behind asks one peer at a time for the blocks
after its head and finalizes each with its commit checked, then consensus resumes.

A peer's Status says how high it is; a peer's GetBlocks is served from the store, as
many blocks as fit half a frame.  One request is out at a time; an unanswered one is
forgotten at the next retry() (the node's status period), so a silent peer costs one
period, not the sync.  Blocks from a peer that was not asked are ignored; a block that
does not finalize proves its sender wrong (InvalidSyncedBlock).  A peer that answers
with no block though it is ahead has pruned the blocks asked for: it is not asked again
for the next PRUNED_SKIP_BLOCKS blocks, so that another peer (an archive) serves them,
until every peer ahead has answered so.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from node.net.wire import MAX_FRAME_BYTES, Blocks, BlockWithCommit, GetBlocks, Status
from node.state.chain import Chain, InvalidBlock
from node.types.blocks import Block, CommitCertificate
from node.uPoW.oracle import WorkUnavailable

SYNC_BATCH = 50
# a pruned peer keeps about a retention window of blocks: asking it again this much
# later costs one empty answer, and finds it serving once this node is that close
PRUNED_SKIP_BLOCKS = 1000


class InvalidSyncedBlock(Exception):
    """A peer sent a block, asked for by sync, that does not finalize on this chain."""


@dataclasses.dataclass(frozen=True)
class SyncStep:
    """What applying a peer's Blocks did: whether the head moved, and the next request
    to send the same peer (None when caught up or waiting for a blob); pruned when every
    peer ahead has answered with none: none keeps a block from this node's next height on."""
    advanced: bool
    next_request: GetBlocks | None
    pruned: bool = False


class BlockSync:
    def __init__(self, chain: Chain, on_finalized: Callable[[Block], None],
                 on_missing_blob: Callable[[bytes], None], batch: int = SYNC_BATCH):
        self.chain = chain
        self.on_finalized = on_finalized  # after each block, as for one decided here
        self.on_missing_blob = on_missing_blob
        self.batch = batch
        self.best_peer_height = 0
        self.asking: bytes | None = None  # the peer whose answer we wait for
        self._peer_heights: dict[bytes, int] = {}  # as each peer's last Status said
        self._pruned: dict[bytes, int] = {}  # peers that sent no block -> this node's height then

    @property
    def syncing(self) -> bool:
        return self.best_peer_height > self.chain.height + 1

    def retry(self) -> None:
        """Forget an unanswered request, so that the next Status asks again."""
        self.asking = None

    def on_status(self, peer: bytes, status: Status) -> GetBlocks | None:
        """The request to send peer, if it is ahead and no request is out."""
        self.best_peer_height = max(self.best_peer_height, status.height)
        self._peer_heights[peer] = status.height
        if status.height <= self.chain.height or self.asking is not None or self._skipped(peer):
            return None
        self.asking = peer
        return self._request()

    def serve(self, request: GetBlocks) -> Blocks:
        """Up to request.count finalized blocks from request.from_height, as many as fit
        half a frame."""
        items, size = [], 0
        if request.from_height < self.chain.base:
            return Blocks(())  # begun from a snapshot: the blocks before it are not here
        last = min(request.from_height + min(request.count, self.batch), self.chain.height + 1)
        for height in range(request.from_height, last):
            block, commit = self.chain.encoded_block(height), self.chain.encoded_commit(height)
            size += len(block) + len(commit)
            if items and size > MAX_FRAME_BYTES // 2:
                break
            items.append(BlockWithCommit(Block.decode(block), CommitCertificate.decode(commit)))
        return Blocks(tuple(items))

    def on_blocks(self, peer: bytes, message: Blocks) -> SyncStep:
        if peer != self.asking:
            return SyncStep(False, None)
        self.asking = None
        if not message.items:
            if self.best_peer_height <= self.chain.height:
                return SyncStep(False, None)
            self._pruned[peer] = self.chain.height
            ahead = {p for p, height in self._peer_heights.items() if height > self.chain.height}
            everywhere = all(self._skipped(p) for p in ahead)
            if everywhere:
                self._pruned.clear()  # ask them all again: one may have been given the blocks since
            return SyncStep(False, None, pruned=everywhere)
        advanced = False
        for item in message.items:
            height = item.block.header.height
            if height <= self.chain.height:
                continue
            try:
                self.chain.finalize(item.block, item.commit)
            except InvalidBlock as exc:
                raise InvalidSyncedBlock(f"synced block {height}: {exc}") from None
            except WorkUnavailable as exc:
                self.on_missing_blob(exc.digest)  # the block comes again once the blob is here
                break
            self.on_finalized(item.block)
            advanced = True
        if advanced and self.best_peer_height > self.chain.height:
            self.asking = peer
            return SyncStep(True, self._request())
        return SyncStep(advanced, None)

    def _skipped(self, peer: bytes) -> bool:
        """Whether peer answered with no block lately (PRUNED_SKIP_BLOCKS)."""
        return peer in self._pruned and self.chain.height < self._pruned[peer] + PRUNED_SKIP_BLOCKS

    def _request(self) -> GetBlocks:
        return GetBlocks(self.chain.height + 1, self.batch)
