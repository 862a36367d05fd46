"""The finalized chain: genesis, the current state, and the store behind them.

Finalizing a block checks it against the head (height, parent, chain id, time,
tx root, close hash, last commit, size), checks its commit certificate against the
committee, executes its transactions and its round close on an overlay, checks
the resulting state root against the header, and only then writes block, commit,
indexes, state changes and head in one synced batch.  Deciding fraud proofs and
round closes needs blobs (through the WorkOracle); a node that lacks one gets
WorkUnavailable, which says "not yet", never "invalid".  On open, the state is
loaded from the store and its root recomputed from scratch; a mismatch with the
head is refused.

Block times only grow: a block's time_ms must exceed its parent's (the genesis counts as
time 0: it has no time field), checked by every node on every block, old or new.  How far
ahead of the clock a new block may be is a voting policy (ConsensusChain), not a rule
here: a block replayed years later is judged by the same bits.
"""
from __future__ import annotations

from typing import Iterable

from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader, CommitCertificate, close_hash, tx_root
from node.types.crypto import sha256
from node.types.genesis import Genesis
from node.state.block_execution import execute_block
from node.state.chain_state import ChainState
from node.state.reader import StateReader
from node.state.records import Committee, CommitteeChange
from node.state.round_close import close_round
from node.state.transition import BlockError, Transition, TxError
from node.state.tx_rules import FRAUD_PROOFS_PER_BLOCK, apply_tx, fraud_proof_count
from node.storage.chainstore import ChainStore, Head, StoreCorrupted
from node.types.transactions import FraudProof, SignedTx
from node.uPoW.oracle import WorkOracle, WorkUnavailable
from node.consensus.commits import InvalidCommit, verify_commit


class InvalidBlock(Exception):
    """A block that cannot be finalized on this chain; the message says why."""


class Chain:
    def __init__(self, genesis: Genesis, store: ChainStore, oracle: WorkOracle):
        self.genesis = genesis
        self.store = store
        self.oracle = oracle
        head = store.head()
        if head is None:
            self.state = ChainState.from_genesis(genesis, oracle.genesis_model_root())
            store.store_genesis_state(self.state.entries, self.state.root(), self.genesis_hash)
            head = store.head()
        else:
            self.state = ChainState(dict(store.state_items()))
            if self.state.root() != head.state_root:
                raise StoreCorrupted(f"the stored state does not hash to the head's state root "
                                     f"at height {head.height}")
            if store.height_of(self.genesis_hash) != 0:
                raise StoreCorrupted("the store was created from another genesis")
        self.head: Head = head
        self.head_time_ms = self._time_of(head.height)
        # the executed transition of each block built or checked on top of the current
        # head, so that checking and finalizing it does not execute it again; keyed by
        # the whole block's bytes, since the header hash alone does not pin the body
        # until the tx root has been checked
        self._checked: dict[bytes, Transition] = {}
        # the entries the last finalized block deleted, as they were: what pruning reads
        self.forgotten: dict[bytes, bytes] = {}

    @property
    def genesis_hash(self) -> bytes:
        return bytes.fromhex(self.genesis.hash)

    @property
    def height(self) -> int:
        return self.head.height

    @property
    def base(self) -> int:
        """The first height whose block this node keeps: 1, or where a snapshot began it."""
        return self.store.base()

    def _time_of(self, height: int) -> int:
        """The time of the finalized block at height (0 for the genesis)."""
        return Block.decode(self.store.block(height)).header.time_ms if height else 0

    def last_commit(self) -> CommitCertificate:
        """The commit certificate of the head block (what the next block carries)."""
        if self.head.height == 0:
            return EMPTY_COMMIT
        return CommitCertificate.decode(self.store.commit(self.head.height))

    def block(self, height: int) -> Block | None:
        raw = self.store.block(height)
        return Block.decode(raw) if raw is not None else None

    def encoded_block(self, height: int) -> bytes | None:
        """The finalized block at height as stored (its encoding starts with its header)."""
        return self.store.block(height)

    def encoded_commit(self, height: int) -> bytes | None:
        """The commit that finalized the block at height, as stored."""
        return self.store.commit(height)

    def landmarks(self) -> list[int]:
        """The heights of the blocks that changed the committee, kept however old."""
        return self.store.landmarks()

    def prune_blocks(self, new_base: int) -> int:
        """Delete the blocks below new_base but the landmarks; returns how many went."""
        if new_base <= self.base:
            return 0
        landmarks = set(self.store.landmarks())
        index_keys = {}
        for height in range(self.base, new_base):
            if height not in landmarks:
                block = Block.decode(self.store.block(height))
                index_keys[height] = (block.hash, [tx.hash for tx in block.txs])
        return self.store.prune_below(new_base, index_keys)

    def refusal_next(self, tx: SignedTx) -> TxError | None:
        """Why the next block could not apply tx as the state stands, or None if it could;
        nothing changes.  (Who proposes that block does not matter to any rule but the
        fee's recipient, here the sender.)"""
        transition = Transition(self.state, self.genesis, self.head.height + 1, self.head.block_hash,
                                self.last_commit(), tx.body.sender, self.oracle)
        try:
            apply_tx(transition, tx)
        except TxError as exc:
            return exc
        return None

    def propose(self, txs: Iterable[SignedTx], proposer: bytes, time_ms: int,
                round_: int = 0) -> tuple[Block, list[tuple[SignedTx, TxError]]]:
        """Build the next block at time_ms (the proposer's clock), or just after its parent's
        time if that is later, from candidate transactions, leaving out those that fail
        (returned with their errors), those beyond the block size cap, and those this
        node cannot decide for want of a blob (WorkUnavailable: left out and not
        returned, so a pool keeps them for a later block).  At a round's closing height
        the block carries the round close; WorkUnavailable if it cannot be computed."""
        height = self.head.height + 1
        last_commit = self.last_commit()
        transition = Transition(self.state, self.genesis, height, self.head.block_hash, last_commit, proposer,
                                self.oracle)
        included, refused = [], []
        for tx in txs:
            if len(included) == self.genesis.consensus.max_block_txs:
                break
            if isinstance(tx.body.payload, FraudProof) and fraud_proof_count(included) == FRAUD_PROOFS_PER_BLOCK:
                continue  # beyond the block's budget of replays: left for a later block
            try:
                apply_tx(transition, tx)
                included.append(tx)
            except TxError as exc:
                refused.append((tx, exc))
            except WorkUnavailable:
                continue
        close = close_round(transition)
        header = BlockHeader(
            chain_id=self.genesis.chain_id, height=height, round=round_,
            time_ms=max(time_ms, self.head_time_ms + 1),
            prev_hash=self.head.block_hash, last_commit_hash=last_commit.hash,
            tx_root=tx_root(tuple(included)), close_hash=close_hash(close),
            state_root=self.state.root_after(transition.writes), proposer=proposer)
        block = Block(header=header, txs=tuple(included), last_commit=last_commit, close=close)
        # built from this very transition: checking our own proposal need not execute it again
        self._checked[_body_key(block)] = transition
        return block, refused

    def check_block(self, block: Block) -> Transition:
        """Validate block as the next one; returns its executed transition.  InvalidBlock
        if it is not valid; WorkUnavailable if this node cannot decide it yet."""
        checked = self._checked.get(_body_key(block))
        if checked is not None:
            return checked
        h = block.header
        if h.chain_id != self.genesis.chain_id:
            raise InvalidBlock(f"chain id {h.chain_id!r} is not {self.genesis.chain_id!r}")
        if h.height != self.head.height + 1:
            raise InvalidBlock(f"height {h.height} does not follow the head {self.head.height}")
        if h.prev_hash != self.head.block_hash:
            raise InvalidBlock("the parent hash is not the head's hash")
        if h.time_ms <= self.head_time_ms:
            raise InvalidBlock(f"time {h.time_ms} ms is not after its parent's {self.head_time_ms} ms")
        if not self.state.committee().power_of(h.proposer):
            # the proposer is paid at a round's close: it must be a seated validator
            raise InvalidBlock(f"the proposer {h.proposer.hex()[:16]} is not in the committee")
        if len(block.txs) > self.genesis.consensus.max_block_txs:
            raise InvalidBlock(f"{len(block.txs)} transactions exceed the cap of "
                               f"{self.genesis.consensus.max_block_txs}")
        if h.tx_root != tx_root(block.txs):
            raise InvalidBlock("the tx root does not match the transactions")
        if h.close_hash != close_hash(block.close):
            raise InvalidBlock("the close hash does not match the carried round close")
        if h.last_commit_hash != block.last_commit.hash:
            raise InvalidBlock("the last commit hash does not match the carried commit")
        self._check_last_commit(block.last_commit)
        try:
            transition = execute_block(self.state, self.genesis, block, self.oracle)
        except BlockError as exc:
            raise InvalidBlock(str(exc)) from None
        if self.state.root_after(transition.writes) != h.state_root:
            raise InvalidBlock("the state root does not match the executed transactions")
        self._checked[_body_key(block)] = transition
        return transition

    def _check_last_commit(self, commit: CommitCertificate) -> None:
        """A block carries some valid commit of the head (the proposer's view of the
        precommits, not necessarily the same signatures this node stored)."""
        if self.head.height == 0:
            if commit != EMPTY_COMMIT:
                raise InvalidBlock("block 1 must carry the empty commit")
            return
        try:
            verify_commit(commit, self.head_committee(), self.genesis.chain_id,
                          self.head.height, self.head.block_hash)
        except InvalidCommit as exc:
            raise InvalidBlock(f"last commit: {exc}") from None

    def head_committee(self) -> Committee:
        """The committee that finalized the head block: the one before a rotation the
        head itself made, else the current one."""
        change = _committee_changed_at(self.state, self.head.height)
        return Committee(change.members) if change is not None else self.state.committee()

    def finalize(self, block: Block, commit: CommitCertificate) -> None:
        """Check block and its commit, then store both and move the head, atomically."""
        transition = self.check_block(block)
        try:
            verify_commit(commit, self.state.committee(), self.genesis.chain_id,
                          block.header.height, block.hash)
        except InvalidCommit as exc:
            raise InvalidBlock(f"commit: {exc}") from None
        writes = transition.writes
        entries = self.state.entries
        self.forgotten = {k: entries[k] for k, v in writes.items() if v is None and k in entries}
        self.store.commit_block(block.header.height, block.hash, block.encode(), commit.encode(),
                                [tx.hash for tx in block.txs], writes, block.header.state_root,
                                is_landmark=_committee_changed_at(transition, block.header.height) is not None)
        self.state.apply_writes(writes)
        self.head = Head(block.header.height, block.hash, block.header.state_root)
        self.head_time_ms = block.header.time_ms
        self._checked.clear()


def _committee_changed_at(state: StateReader, height: int) -> CommitteeChange | None:
    """The committee change the block at height made (the committee before it), if any."""
    change = state.previous_committee()
    return change if change is not None and change.height == height else None


def _body_key(block: Block) -> bytes:
    return sha256(block.encode())
