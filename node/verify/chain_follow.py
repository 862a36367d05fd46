"""Following the finalized chain without executing it, as a light client does.

Each block must extend the last (height, parent hash, chain id), its body must match
its header (tx root, close hash), and its commit, carried by the next block, must
hold precommits of more than 2/3 of the committee's power.  The committee is tracked
from the genesis through every change a finalized block makes: each double signer it
proves leaves, and its round close may seat the next committee.  So a block's header,
state root included, is as trustworthy as the committee's signatures, with no state.

A follower may also jump ahead (verify_ahead): from one committee-changing block (a
landmark, which nodes keep when they prune) to the next, then to the block it wants,
each checked against its own commit.
"""
from __future__ import annotations

from node.consensus.commits import InvalidCommit, verify_commit
from node.state.records import Committee
from node.types.blocks import Block, CommitCertificate, CommitteeMember, close_hash, tx_root
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
        self._check(block, commit_carrier.last_commit)

    def verify_ahead(self, block: Block, commit: CommitCertificate) -> None:
        """ChainFollowError unless block, above the head, is finalized by commit under the
        committee followed so far.  The blocks between are not read (pruned nodes keep
        only the committee-changing ones): that is sound when none of them changed the
        committee.  A peer that hides such a change gains nothing by it: the committee
        it seated signed the later blocks, and the one followed signs only blocks it
        decided, so the commit does not verify, or the block is the chain's anyway."""
        h = block.header
        if h.height <= self.height:
            raise ChainFollowError(f"block {h.height} is not above height {self.height}")
        self._check(block, commit)

    def _check(self, block: Block, commit: CommitCertificate) -> None:
        h = block.header
        if h.chain_id != self.chain_id:
            raise ChainFollowError(f"block {h.height} is for chain {h.chain_id!r}")
        if h.tx_root != tx_root(block.txs) or h.close_hash != close_hash(block.close):
            raise ChainFollowError(f"block {h.height}'s body does not match its header")
        try:
            verify_commit(commit, self.committee, self.chain_id, h.height, block.hash)
        except InvalidCommit as exc:
            raise ChainFollowError(f"block {h.height}'s commit: {exc}") from None

    def advance(self, block: Block) -> Committee:
        """Move the head to a verified block; returns the committee it was proposed under."""
        proposed_under, self.committee = self.committee, committee_after(self.committee, block)
        self.height, self.head_hash = block.header.height, block.hash
        return proposed_under
