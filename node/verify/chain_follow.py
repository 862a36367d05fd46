"""Following the finalized chain without executing it, as a light client does.

Each block must extend the last (height, parent hash, chain id), its body must match
its header (tx root, close hash), and its commit, carried by the next block, must
hold precommits of more than 2/3 of the committee's power.  The committee is tracked
from the genesis through every change a finalized block makes: each double signer it
proves leaves, and its round close may seat the next committee.  So a block's header,
state root included, is as trustworthy as the committee's signatures, with no state.
"""
from __future__ import annotations

from node.consensus.commits import InvalidCommit, verify_commit
from node.state.records import Committee
from node.types.blocks import Block, CommitteeMember, close_hash, tx_root
from node.types.genesis import Genesis
from node.types.transactions import DoubleSignEvidence


class ChainFollowError(Exception):
    """A block from a full node that does not verify; the message says why, in one line."""


def committee_after(committee: Committee, block: Block) -> Committee:
    """The committee a finalized block leaves, proposed under committee: less each double
    signer it proves (every transaction of a finalized block applied, so the ledger
    removed them: node.state.equivocation), then the next committee its round close seats."""
    for tx in block.txs:
        if isinstance(tx.body.payload, DoubleSignEvidence):
            committee = committee.without(tx.body.payload.first.validator)
    for close in block.close:
        if close.next_committee:
            committee = Committee(close.next_committee)
    return committee


class FollowedChain:
    """The chain verified up to height: its head's hash and the committee after it."""

    def __init__(self, genesis: Genesis):
        self.chain_id = genesis.chain_id
        self.committee = Committee(tuple(CommitteeMember(v.pub_key, v.power) for v in genesis.validators))
        self.height = 0
        self.head_hash = bytes.fromhex(genesis.hash)

    def verify(self, block: Block, commit_carrier: Block) -> None:
        """ChainFollowError unless block is the next one, finalized by the commit that
        commit_carrier (the block after it) carries."""
        h = block.header
        if h.height != self.height + 1 or h.prev_hash != self.head_hash:
            raise ChainFollowError(f"block {h.height} does not extend height {self.height}")
        if h.chain_id != self.chain_id:
            raise ChainFollowError(f"block {h.height} is for chain {h.chain_id!r}")
        if h.tx_root != tx_root(block.txs) or h.close_hash != close_hash(block.close):
            raise ChainFollowError(f"block {h.height}'s body does not match its header")
        try:
            verify_commit(commit_carrier.last_commit, self.committee, self.chain_id, h.height, block.hash)
        except InvalidCommit as exc:
            raise ChainFollowError(f"block {h.height}'s commit: {exc}") from None

    def advance(self, block: Block) -> Committee:
        """Move the head to a verified block; returns the committee it was proposed under."""
        proposed_under, self.committee = self.committee, committee_after(self.committee, block)
        self.height, self.head_hash = block.header.height, block.hash
        return proposed_under
