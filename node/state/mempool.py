"""Pending transactions, waiting for a block.

A transaction is admitted only if it could become applicable: a valid signature
for this chain, a nonce not yet used and not too far ahead of the sender's
committed nonce, at least the genesis's minimum fee, a balance that covers what it
and the sender's other pending transactions spend (fees, amounts moved out,
deposits), and room in the pool.  So a key without coins cannot park anything, and
after each block a sender's latest transactions that its balance no longer covers are
dropped.

A full pool makes room by evicting the least useful transaction it can: a sender's
last pending nonce (its earlier nonces stay as they were), one that no block can apply
yet (a nonce gap before it) before one that is ready, the lowest fee first, if it
ranks below the newcomer by the same measure.  A gap costs nothing until it is
filled, so parked transactions with high fees cannot hold the pool against payable ones.  The node's own transactions
(its work commitments, audit reports, fraud proofs) and proofs that show fraud are
never evicted, and they and every fraud proof find room, so a flood cannot stop the
node's work nor keep a proof of fraud out.  A
transaction that has waited EXPIRY_BLOCKS blocks is dropped: the pool does not fill
with what no block takes.  The pool remembers why it dropped each of the last
MAX_DROPPED transactions, so that a sender asking after one learns its fate.

Reaping hands a proposer, for each sender, the run of consecutive nonces that
starts at the sender's committed nonce (what a block can apply, in order), taking
one transaction per sender per turn so that one busy sender cannot crowd out the
others; senders whose first ready transaction pays more go first.  The order
depends only on what was added, its fees and when, never on a clock or on hash
ordering, so a test can predict it.  No I/O here.

Fraud proofs cost validators a replay each, so they get more care.  One enters only
with the verdict of its replay, decided before it is offered, off the event loop
(node/work/fraud_intake.py); its sender must hold the deposit for it and for each of
its fraud proofs already pending; a sender whose proof showed no fraud may queue no
more (the one admitted still costs it its deposit on chain).  A reap takes at most
the ledger's per-block budget of fraud proofs, and the senders whose next
transaction is a proof that shows fraud take their turns first, so bogus proofs
cannot crowd out a true one.
"""
from __future__ import annotations

import dataclasses

from node.state.reader import StateReader
from node.state.tx_rules import FRAUD_PROOFS_PER_BLOCK
from node.types.genesis import EconomicsConfig
from node.types.transactions import Bond, FraudProof, SignedTx, Transfer

# how far past its committed nonce a sender may queue: bounds what one key can park
MAX_NONCE_GAP = 64
# senders remembered for a fraud proof that showed no fraud, the oldest forgotten first
MAX_FAILED_PROVERS = 10_000
# blocks a transaction may wait before it is dropped
EXPIRY_BLOCKS = 600
# dropped transactions remembered with their reason codes, the oldest forgotten first
MAX_DROPPED = 10_000


class MempoolError(Exception):
    """A transaction the pool refuses; reason is a stable code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class _Entry:
    tx: SignedTx
    seq: int  # arrival order, for fairness between senders
    height: int  # the latest height the pool knew when it took the transaction
    shows_fraud: bool | None = None  # a fraud proof's verdict; None for other kinds
    own: bool = False  # the node's own: never evicted

    @property
    def evictable(self) -> bool:
        return not self.own and self.shows_fraud is not True


def _is_fraud_proof(tx: SignedTx) -> bool:
    return isinstance(tx.body.payload, FraudProof)


def _proves_proven_unit(tx: SignedTx, state: StateReader) -> bool:
    proof = tx.body.payload
    return isinstance(proof, FraudProof) and state.fraud_record(proof.round, proof.miner, proof.unit) is not None


class Mempool:
    def __init__(self, max_txs: int, max_tx_bytes: int, economics: EconomicsConfig):
        self.max_txs = max_txs
        self.max_tx_bytes = max_tx_bytes
        self.min_tx_fee = economics.min_tx_fee
        self.fraud_proof_deposit = economics.fraud_proof_deposit
        self._failed_provers: dict[bytes, None] = {}  # in the order they failed
        self._dropped: dict[bytes, str] = {}  # tx hash -> reason code, in the order dropped
        self._by_hash: dict[bytes, _Entry] = {}
        self._by_sender: dict[bytes, dict[int, bytes]] = {}  # sender -> nonce -> tx hash
        self._committed_nonce: dict[bytes, int] = {}  # as of the latest state seen
        self._seq = 0
        self._height = 0  # the latest height expire was told of

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    def add(self, tx: SignedTx, state: StateReader, chain_id: str,
            shows_fraud: bool | None = None, own: bool = False) -> None:
        """Admit tx or raise MempoolError.  A fraud proof comes with the verdict of its
        replay (shows_fraud), and is refused without one.  own: the node's own
        transaction, which a full pool makes room for and never evicts."""
        victim = self.screen(tx, state, chain_id, own)
        if _is_fraud_proof(tx):
            if shows_fraud is None:
                raise MempoolError("unchecked", "a fraud proof is admitted only with its replay's verdict")
            if not shows_fraud:
                self._failed_provers[tx.body.sender] = None
                while len(self._failed_provers) > MAX_FAILED_PROVERS:
                    del self._failed_provers[next(iter(self._failed_provers))]
        if victim is not None:
            self.discard(victim, "evicted")
        sender, nonce = tx.body.sender, tx.body.nonce
        self._dropped.pop(tx.hash, None)
        self._by_hash[tx.hash] = _Entry(tx, self._seq, self._height,
                                        shows_fraud if _is_fraud_proof(tx) else None, own)
        self._seq += 1
        self._by_sender.setdefault(sender, {})[nonce] = tx.hash
        self._committed_nonce[sender] = state.account(sender).nonce

    def screen(self, tx: SignedTx, state: StateReader, chain_id: str, own: bool = False) -> bytes | None:
        """Raise MempoolError if add would refuse tx whatever its verdict; else the hash of
        the transaction a full pool would evict for it, or None.  The cheap checks come
        before the signature.  A node screens a fraud proof before it replays it."""
        size = len(tx.encode())
        if size > self.max_tx_bytes:
            raise MempoolError("oversize", f"{size} bytes exceeds the cap of {self.max_tx_bytes}")
        tx_hash = tx.hash
        if tx_hash in self._by_hash:
            raise MempoolError("duplicate", "the transaction is already pending")
        sender, nonce = tx.body.sender, tx.body.nonce
        committed = state.account(sender).nonce
        if nonce < committed:
            raise MempoolError("nonce_replayed",
                               f"nonce {nonce} was already used (next is {committed})")
        if nonce > committed + MAX_NONCE_GAP:
            raise MempoolError("nonce_too_far", f"nonce {nonce} is more than {MAX_NONCE_GAP} "
                                                f"ahead of the next nonce {committed}")
        pending = self._by_sender.get(sender, {})
        if nonce in pending:
            raise MempoolError("nonce_pending", f"another transaction with nonce {nonce} "
                                                f"from this sender is pending")
        if tx.body.fee < self.min_tx_fee:
            raise MempoolError("fee_too_low", f"fee {tx.body.fee} is below the minimum {self.min_tx_fee}")
        if _is_fraud_proof(tx):
            self._screen_fraud_proof(sender, state)
        spends = self._spends(tx) + sum(self._spends(self._by_hash[h].tx) for h in pending.values())
        balance = state.account(sender).balance
        if spends > balance:
            raise MempoolError("insufficient_balance", f"balance {balance} < {spends}, what this and the "
                                                       f"sender's {len(pending)} pending transactions spend")
        victim = None
        if len(self._by_hash) >= self.max_txs:
            # a fraud proof's verdict is not known yet here: each sender's proofs are
            # bounded by their deposits and the failed-prover rule, so proofs find room
            victim = self._least_useful_tail(sender)
            privileged = own or _is_fraud_proof(tx)
            rank = (nonce == self.next_nonce(sender, committed), tx.body.fee)
            if victim is None or not (privileged or self._rank(victim) < rank):
                raise MempoolError("mempool_full", f"{self.max_txs} transactions are pending and none "
                                                   f"that may be evicted ranks below this one (fee "
                                                   f"{tx.body.fee})")
        if not tx.signature_valid(chain_id):
            raise MempoolError("bad_signature",
                               "the signature does not verify for this sender and chain")
        return None if victim is None else victim.tx.hash

    def _least_useful_tail(self, newcomer: bytes) -> _Entry | None:
        """Among other senders' last pending transactions that may be evicted, the lowest
        ranked (the latest to arrive of equals)."""
        tails = (self._by_hash[pending[max(pending)]] for sender, pending in self._by_sender.items()
                 if sender != newcomer)
        return min((e for e in tails if e.evictable), key=lambda e: (self._rank(e), -e.seq), default=None)

    def _rank(self, entry: _Entry) -> tuple[bool, int]:
        """(whether a block can apply it after the sender's pending run, its fee), for a
        sender's last pending transaction."""
        sender = entry.tx.body.sender
        ready = entry.tx.body.nonce - self._committed_nonce[sender] + 1 == len(self._by_sender[sender])
        return ready, entry.tx.body.fee

    def _screen_fraud_proof(self, sender: bytes, state: StateReader) -> None:
        if sender in self._failed_provers:
            raise MempoolError("failed_prover", "a fraud proof from this sender showed no fraud")
        pending = self.pending_fraud_proofs(sender)
        needed, balance = self.fraud_proof_deposit * (pending + 1), state.account(sender).balance
        if balance < needed:
            raise MempoolError("insufficient_deposit", f"balance {balance} < {needed}, the deposits "
                                                       f"of {pending + 1} fraud proofs")

    def _spends(self, tx: SignedTx) -> int:
        """What tx takes from its sender's balance at most: its fee, and the amount it
        moves out or the deposit it locks."""
        payload = tx.body.payload
        moved = payload.amount if isinstance(payload, (Transfer, Bond)) else 0
        return tx.body.fee + moved + (self.fraud_proof_deposit if isinstance(payload, FraudProof) else 0)

    def pending_fraud_proofs(self, sender: bytes) -> int:
        return sum(_is_fraud_proof(self._by_hash[h].tx) for h in self._by_sender.get(sender, {}).values())

    def next_nonce(self, sender: bytes, committed: int) -> int:
        """The nonce a new transaction from sender should take: the first free one after
        the pending run that starts at its committed nonce."""
        pending = self._by_sender.get(sender, {})
        nonce = committed
        while nonce in pending:
            nonce += 1
        return nonce

    def gaps(self, sender: bytes, committed: int) -> list[int]:
        """The nonces missing before sender's last pending transaction (from its committed
        nonce on): what holds its later transactions back from every block."""
        pending = self._by_sender.get(sender, {})
        return [n for n in range(committed, max(pending, default=committed)) if n not in pending]

    def reap(self, max_txs: int) -> list[SignedTx]:
        """Up to max_txs transactions a block can apply in order, without removing them;
        at most FRAUD_PROOFS_PER_BLOCK of them fraud proofs (a sender's run stops at a
        proof beyond the budget)."""
        runs = []
        for sender, pending in self._by_sender.items():
            nonce, run = self._committed_nonce[sender], []
            while nonce in pending:
                run.append(self._by_hash[pending[nonce]])
                nonce += 1
            if run:
                runs.append(run)
        # senders take turns: those that open with a proof of fraud first, then by the fee
        # of their first ready transaction, then in the order it arrived
        runs.sort(key=lambda run: (run[0].shows_fraud is not True, -run[0].tx.body.fee, run[0].seq))
        reaped: list[SignedTx] = []
        proofs = depth = 0
        while len(reaped) < max_txs and runs:
            going = []
            for run in runs:
                if len(reaped) == max_txs or len(run) <= depth:
                    continue
                if _is_fraud_proof(run[depth].tx):
                    if proofs == FRAUD_PROOFS_PER_BLOCK:
                        continue
                    proofs += 1
                reaped.append(run[depth].tx)
                going.append(run)
            runs = going
            depth += 1
        return reaped

    def dropped_reason(self, tx_hash: bytes) -> str | None:
        """Why the pool dropped tx_hash (a reason code), if it did so lately."""
        return self._dropped.get(tx_hash)

    def _remember_dropped(self, tx_hash: bytes, reason: str) -> None:
        self._dropped[tx_hash] = reason
        while len(self._dropped) > MAX_DROPPED:
            del self._dropped[next(iter(self._dropped))]

    def discard(self, tx_hash: bytes, reason: str) -> None:
        """Drop one transaction, for reason (say, the code of the rule a proposed block
        could not apply it by); the sender's later nonces stay, waiting for a
        transaction that fills the gap."""
        entry = self._by_hash.pop(tx_hash, None)
        if entry is None:
            return
        self._remember_dropped(tx_hash, reason)
        sender = entry.tx.body.sender
        pending = self._by_sender[sender]
        del pending[entry.tx.body.nonce]
        if not pending:
            del self._by_sender[sender]
            del self._committed_nonce[sender]

    def remove_committed(self, state: StateReader) -> None:
        """After a block: drop every transaction whose nonce the state has used up, each
        fraud proof of a unit the state already records as proven (another prover was
        first; no block can take it), and each sender's latest transactions that its
        balance no longer covers (it spent through another node, say), so that nothing
        unpayable stays parked until it expires.  Every node drops the same proofs at the
        same height, so the sender's next transaction at that nonce finds room anywhere."""
        for sender in list(self._by_sender):
            account = state.account(sender)
            pending = self._by_sender[sender]
            for nonce in [n for n in pending if n < account.nonce]:
                del self._by_hash[pending.pop(nonce)]  # included, most likely: the chain's index tells
            for nonce in [n for n in pending if _proves_proven_unit(self._by_hash[pending[n]].tx, state)]:
                self._drop_pending(pending, nonce, "already_proven")
            spends = 0
            for nonce in sorted(pending):
                spends += self._spends(self._by_hash[pending[nonce]].tx)
                if spends > account.balance:
                    self._drop_pending(pending, nonce, "insufficient_balance")
            if pending:
                self._committed_nonce[sender] = account.nonce
            else:
                del self._by_sender[sender]
                del self._committed_nonce[sender]

    def _drop_pending(self, pending: dict[int, bytes], nonce: int, reason: str) -> None:
        tx_hash = pending.pop(nonce)
        del self._by_hash[tx_hash]
        self._remember_dropped(tx_hash, reason)

    def expire(self, height: int) -> int:
        """Tell the pool the chain reached height: drop what has waited EXPIRY_BLOCKS
        blocks (the node's own too: by then a round's windows have closed on it).
        Returns how many."""
        self._height = height
        stale = [h for h, e in self._by_hash.items() if e.height + EXPIRY_BLOCKS <= height]
        for tx_hash in stale:
            self.discard(tx_hash, "expired")
        return len(stale)
