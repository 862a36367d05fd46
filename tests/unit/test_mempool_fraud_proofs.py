"""The mempool's care with fraud proofs: admitted only with their replay's verdict and
a deposit for each one pending, no more from a sender whose proof failed, and at most
the block's budget of them per reap, proofs of fraud first."""
import pytest

from node.state.chain_state import ChainState
from node.state.mempool import Mempool, MempoolError
from node.state.records import AccountRecord, FraudRecord, account_key, fraud_key
from node.state.tx_rules import FRAUD_PROOFS_PER_BLOCK
from node.types.crypto import SigningKey, sha256
from node.types.transactions import FraudProof, SignedTx, sign_tx
from tests.unit.test_mempool import CHAIN_ID, ECONOMICS, FEE, TO, refusal, state_with, transfer

KEYS = [SigningKey(sha256(b"prover %d" % i)) for i in range(FRAUD_PROOFS_PER_BLOCK + 2)]
ALICE = SigningKey(sha256(b"alice"))


def proof(key, nonce) -> SignedTx:
    return sign_tx(key, CHAIN_ID, nonce, FraudProof(0, TO, 0, 0, TO, (), TO, (), sha256(b"%d" % nonce)), FEE)


def accounts(keys, nonce=0) -> ChainState:
    """Each key's account: a balance of 100 (two deposits) and the given nonce."""
    return ChainState({account_key(k.public_key): AccountRecord(100, nonce, 0).encode() for k in keys})


def test_a_fraud_proof_without_a_verdict_is_refused():
    assert refusal(Mempool(10, 1000, ECONOMICS), proof(ALICE, 0), state_with(alice=0)) == "unchecked"


def test_each_pending_fraud_proof_needs_its_own_deposit():
    pool, state = Mempool(10, 1000, ECONOMICS), state_with(alice=0)  # a balance of 100: two deposits
    pool.add(proof(ALICE, 0), state, CHAIN_ID, shows_fraud=True)
    pool.add(proof(ALICE, 1), state, CHAIN_ID, shows_fraud=True)
    with pytest.raises(MempoolError) as info:
        pool.screen(proof(ALICE, 2), state, CHAIN_ID)
    assert info.value.reason == "insufficient_deposit"
    pool.add(transfer(ALICE, 2), state, CHAIN_ID)  # other kinds need no deposit
    assert pool.pending_fraud_proofs(ALICE.public_key) == 2


def test_a_sender_whose_proof_failed_may_queue_no_more_proofs():
    pool, state = Mempool(10, 1000, ECONOMICS), state_with(alice=0)
    pool.add(proof(ALICE, 0), state, CHAIN_ID, shows_fraud=False)  # admitted: it will burn its deposit
    assert pool.reap(10) == [proof(ALICE, 0)]
    assert refusal(pool, proof(ALICE, 1), state) == "failed_prover"
    pool.remove_committed(state_with(alice=1))
    assert refusal(pool, proof(ALICE, 1), state_with(alice=1)) == "failed_prover"
    pool.add(transfer(ALICE, 1), state_with(alice=1), CHAIN_ID)  # other kinds still go in


def test_failed_provers_are_forgotten_oldest_first(monkeypatch):
    monkeypatch.setattr("node.state.mempool.MAX_FAILED_PROVERS", 2)
    pool, keys = Mempool(10, 1000, ECONOMICS), KEYS[:3]
    for key in keys:
        pool.add(proof(key, 0), accounts(keys), CHAIN_ID, shows_fraud=False)
    state = accounts(keys, nonce=1)
    pool.remove_committed(state)
    pool.add(proof(keys[0], 1), state, CHAIN_ID, shows_fraud=True)  # forgotten
    assert refusal(pool, proof(keys[1], 1), state) == "failed_prover"


def test_a_reap_takes_the_blocks_budget_of_proofs_proofs_of_fraud_first():
    pool, state = Mempool(100, 1000, ECONOMICS), accounts(KEYS)
    # every prover's proof is followed by a transfer; the last prover's proof shows fraud
    for key in KEYS:
        pool.add(proof(key, 0), state, CHAIN_ID, shows_fraud=key is KEYS[-1])
        pool.add(transfer(key, 1), state, CHAIN_ID)
    reaped = pool.reap(100)
    proofs = [tx for tx in reaped if isinstance(tx.body.payload, FraudProof)]
    assert len(proofs) == FRAUD_PROOFS_PER_BLOCK
    assert reaped[0] == proof(KEYS[-1], 0)
    # a sender whose proof is left out waits whole: its transfer cannot go before it
    left_out = {key.public_key for key in KEYS} - {tx.body.sender for tx in proofs}
    assert left_out and not any(tx.body.sender in left_out for tx in reaped)
    assert pool.reap(3) == reaped[:3]


def test_a_fraud_proof_finds_room_in_a_pool_full_of_transfers():
    """A full pool must not keep a proof out (its verdict is decided after screening):
    it takes the place of the cheapest transfer."""
    pool, state = Mempool(2, 1000, ECONOMICS), accounts(KEYS)
    transfers = [transfer(KEYS[1], 0), transfer(KEYS[2], 0)]
    for tx in transfers:
        pool.add(tx, state, CHAIN_ID)
    assert pool.screen(proof(KEYS[0], 0), state, CHAIN_ID) == transfers[1].hash
    pool.add(proof(KEYS[0], 0), state, CHAIN_ID, shows_fraud=True)
    assert len(pool) == 2 and transfers[1].hash not in pool
    assert pool.reap(10)[0] == proof(KEYS[0], 0)


def test_a_proof_of_a_unit_another_prover_proved_is_dropped_after_the_block_leaving_a_gap():
    """Two provers race; the block takes one.  The loser's proof can never be included,
    and its later transactions (its audit reports) would wait behind it for good: every
    pool drops it at that block, and gaps names the nonce its sender must fill."""
    pool, state = Mempool(10, 1000, ECONOMICS), accounts([ALICE])
    pool.add(proof(ALICE, 0), state, CHAIN_ID, shows_fraud=True)
    later = transfer(ALICE, 1)
    pool.add(later, state, CHAIN_ID)
    pool.remove_committed(state)
    assert len(pool) == 2 and pool.gaps(ALICE.public_key, 0) == []
    proven = ChainState({**state.entries, fraud_key(0, TO, 0): FraudRecord(KEYS[0].public_key, 0).encode()})
    pool.remove_committed(proven)
    assert proof(ALICE, 0).hash not in pool and later.hash in pool
    assert pool.reap(10) == [] and pool.gaps(ALICE.public_key, 0) == [0]
    filler = transfer(ALICE, 0)
    pool.add(filler, proven, CHAIN_ID)
    assert pool.gaps(ALICE.public_key, 0) == [] and pool.reap(10) == [filler, later]
