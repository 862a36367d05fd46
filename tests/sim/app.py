"""A tiny in-memory application for consensus tests: empty blocks that chain by hash."""
from __future__ import annotations

from node.types import crypto
from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader
from node.types.votes import NIL_HASH

CHAIN_ID = "sim-chain"
GENESIS_HASH = crypto.sha256(b"sim genesis")


def make_block(height: int, round_: int, prev_hash: bytes, proposer: bytes, nonce: bytes = b"",
               chain_id: str = CHAIN_ID) -> Block:
    """An empty block; `nonce` lets two builders (twins, an equivocator) make different ones."""
    header = BlockHeader(chain_id=chain_id, height=height, round=round_, time_ms=0,
                         prev_hash=prev_hash, last_commit_hash=NIL_HASH, tx_root=NIL_HASH, close_hash=NIL_HASH,
                         state_root=crypto.sha256(nonce), proposer=proposer)
    return Block(header=header, txs=(), last_commit=EMPTY_COMMIT)


class ChainApp:
    """One node's chain of decided blocks; builds and checks the next one."""

    def __init__(self, proposer: bytes, nonce: bytes = b""):
        self.proposer = proposer
        self.nonce = nonce
        self.hashes = [GENESIS_HASH]  # hashes[h] is the block decided at height h

    @property
    def height(self) -> int:
        """The height being decided next."""
        return len(self.hashes)

    def build_block(self, height: int, round_: int) -> Block:
        return make_block(height, round_, self.hashes[height - 1], self.proposer, self.nonce)

    def check_block(self, block: Block) -> bool:
        height = block.header.height
        return 0 < height <= len(self.hashes) and block.header.prev_hash == self.hashes[height - 1]

    def append(self, block: Block) -> None:
        assert block.header.height == self.height and self.check_block(block)
        self.hashes.append(block.hash)
