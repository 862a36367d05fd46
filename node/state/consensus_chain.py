"""The chain as the consensus driver sees it (node.consensus.driver.ChainView).

Blocks are built from the mempool's transactions; a block that cannot be built,
checked or finalized for want of a blob is "not yet" (on_missing_blob is asked to
fetch it), never "invalid".

Voting policy, not a chain rule: a validator does not accept a proposal whose time is
more than the genesis' max_clock_drift_ms ahead of its own clock, so a proposer can
neither push block times far ahead of the committee's clocks nor use the time field
as free bits beyond that window.  Blocks received by sync are finalized by Chain
alone, which judges time only against the parent.
"""
from __future__ import annotations

import logging
from typing import Callable

from node.state.chain import Chain, InvalidBlock
from node.state.mempool import Mempool
from node.types.blocks import Block, CommitCertificate
from node.uPoW.oracle import WorkUnavailable

log = logging.getLogger("uponode.consensus")


class ConsensusChain:
    def __init__(self, chain: Chain, mempool: Mempool, proposer: bytes,
                 clock_ms: Callable[[], int], on_missing_blob: Callable[[bytes], None]):
        self.chain = chain
        self.mempool = mempool
        self.proposer = proposer
        self.clock_ms = clock_ms
        self.on_missing_blob = on_missing_blob

    @property
    def height(self) -> int:
        return self.chain.height

    def validators(self) -> list[tuple[bytes, int]]:
        return [(m.pub_key, m.power) for m in self.chain.state.committee().members]

    def build_block(self, height: int, round_: int) -> Block | None:
        txs = self.mempool.reap(self.chain.genesis.consensus.max_block_txs)
        try:
            block, refused = self.chain.propose(txs, self.proposer, self.clock_ms(), round_)
        except WorkUnavailable as exc:
            log.warning("cannot propose height %d yet: %s", height, exc)
            self.on_missing_blob(exc.digest)
            return None
        for tx, error in refused:
            self.mempool.discard(tx.hash, error.reason)
            log.info("left out tx %s: %s", tx.hash.hex()[:16], error)
        return block

    def check_block(self, block: Block) -> bool:
        ahead = block.header.time_ms - self.clock_ms()
        if ahead > self.chain.genesis.consensus.max_clock_drift_ms:
            log.warning("refusing proposed block at height %d: its time is %d ms ahead of this "
                        "node's clock, more than the allowed drift of %d ms", block.header.height,
                        ahead, self.chain.genesis.consensus.max_clock_drift_ms)
            return False
        try:
            self.chain.check_block(block)
            return True
        except InvalidBlock as exc:
            log.warning("refusing proposed block at height %d: %s", block.header.height, exc)
            return False
        except WorkUnavailable as exc:
            log.warning("cannot check the block at height %d yet: %s", block.header.height, exc)
            self.on_missing_blob(exc.digest)
            return False

    def finalize(self, block: Block, certificate: CommitCertificate) -> bool:
        try:
            self.chain.finalize(block, certificate)
            return True
        except InvalidBlock as exc:
            log.error("decided block at height %d does not finalize: %s", block.header.height, exc)
        except WorkUnavailable as exc:
            # decided by the committee while this node lacks a blob to re-check it: the
            # block arrives again by block sync once the blob is here
            log.warning("decided block at height %d waits for a blob: %s", block.header.height, exc)
            self.on_missing_blob(exc.digest)
        return False
