"""The mempool: every refusal with its reason, reaping in an order a block can apply,
and dropping what a block has committed."""
import dataclasses

import pytest

from node.types.crypto import SigningKey, sha256
from node.types.genesis import load_genesis
from node.state.chain_state import ChainState
from node.state.records import AccountRecord, account_key
from node.state.mempool import EXPIRY_BLOCKS, MAX_NONCE_GAP, Mempool, MempoolError
from node.types.transactions import FraudProof, Transfer, sign_tx

CHAIN_ID = "chain-test"
ALICE, BOB, CAROL = (SigningKey(sha256(name)) for name in (b"alice", b"bob", b"carol"))
TO = bytes(32)
DEPOSIT = 40  # of a fraud proof; every account here holds 100
FEE = 1  # the minimum fee, which every transaction here pays
ECONOMICS = dataclasses.replace(load_genesis().economics, fraud_proof_deposit=DEPOSIT, min_tx_fee=FEE)


def state_with(**nonces: int) -> ChainState:
    """alice, bob and carol, each with a balance of 100 and the given nonce (else 0)."""
    keys = {"alice": ALICE, "bob": BOB, "carol": CAROL}
    return ChainState({account_key(key.public_key): AccountRecord(100, nonces.get(name, 0), 0).encode()
                       for name, key in keys.items()})


def transfer(key, nonce, amount=1, chain_id=CHAIN_ID, fee=FEE):
    return sign_tx(key, chain_id, nonce, Transfer(TO, amount), fee)


def refusal(pool, tx, state, chain_id=CHAIN_ID) -> str:
    with pytest.raises(MempoolError) as info:
        pool.add(tx, state, chain_id)
    return info.value.reason


def test_an_accepted_transaction_is_pending():
    pool = Mempool(10, 1000, ECONOMICS)
    tx = transfer(ALICE, 0)
    pool.add(tx, state_with(), CHAIN_ID)
    assert len(pool) == 1 and tx.hash in pool and b"x" * 32 not in pool


def test_a_fee_below_the_minimum_is_refused():
    low = sign_tx(ALICE, CHAIN_ID, 0, Transfer(TO, 1), FEE - 1)
    assert refusal(Mempool(10, 1000, ECONOMICS), low, state_with()) == "fee_too_low"


def test_keys_without_coins_park_nothing():
    """The flood of issue 13: fresh keys sending future nonces.  Each is refused, since
    its balance covers no fee, and the pool stays empty for honest transactions."""
    pool = Mempool(10, 1000, ECONOMICS)
    for i in range(50):
        key = SigningKey(sha256(b"flooder %d" % i))
        assert refusal(pool, sign_tx(key, CHAIN_ID, 1 + i % 20, Transfer(TO, 0), FEE), state_with()) \
            == "insufficient_balance"
    assert len(pool) == 0
    pool.add(transfer(ALICE, 0), state_with(), CHAIN_ID)


def test_the_balance_must_cover_every_pending_transaction_of_the_sender():
    pool, state = Mempool(10, 1000, ECONOMICS), state_with()
    for nonce in range(2):  # 2 x (48 + 1) = 98 of alice's 100
        pool.add(transfer(ALICE, nonce, amount=48), state, CHAIN_ID)
    with pytest.raises(MempoolError, match=r"^insufficient_balance: balance 100 < 101"):
        pool.add(transfer(ALICE, 2, amount=2), state, CHAIN_ID)
    pool.add(transfer(ALICE, 2, amount=1), state, CHAIN_ID)  # exactly the balance
    pool.add(transfer(BOB, 0, amount=99), state, CHAIN_ID)  # another sender's own balance


def test_oversize_is_refused():
    big = sign_tx(ALICE, CHAIN_ID, 0, FraudProof(0, TO, 0, 0, TO, (TO,) * 40, TO, (), TO), FEE)
    assert refusal(Mempool(10, len(big.encode()) - 1, ECONOMICS), big, state_with()) == "oversize"
    Mempool(10, len(big.encode()), ECONOMICS).add(big, state_with(alice=0), CHAIN_ID, shows_fraud=True)


def test_a_duplicate_is_refused():
    pool, tx = Mempool(10, 1000, ECONOMICS), transfer(ALICE, 0)
    pool.add(tx, state_with(), CHAIN_ID)
    assert refusal(pool, tx, state_with()) == "duplicate"


@pytest.mark.parametrize("tx", [
    transfer(ALICE, 0, chain_id="another-chain"),
    dataclasses.replace(transfer(ALICE, 0), signature=bytes(64)),
    dataclasses.replace(transfer(ALICE, 0), body=transfer(BOB, 0).body),
])
def test_a_bad_signature_is_refused(tx):
    pool = Mempool(10, 1000, ECONOMICS)
    assert refusal(pool, tx, state_with()) == "bad_signature"
    assert len(pool) == 0


def test_a_used_nonce_is_refused():
    assert refusal(Mempool(10, 1000, ECONOMICS), transfer(ALICE, 2), state_with(alice=3)) == "nonce_replayed"


def test_a_nonce_too_far_ahead_is_refused():
    pool, state = Mempool(10, 1000, ECONOMICS), state_with(alice=3)
    pool.add(transfer(ALICE, 3 + MAX_NONCE_GAP), state, CHAIN_ID)
    assert refusal(pool, transfer(ALICE, 4 + MAX_NONCE_GAP), state) == "nonce_too_far"


def test_a_second_transaction_with_a_pending_nonce_is_refused():
    pool = Mempool(10, 1000, ECONOMICS)
    pool.add(transfer(ALICE, 0, amount=1), state_with(), CHAIN_ID)
    assert refusal(pool, transfer(ALICE, 0, amount=2), state_with()) == "nonce_pending"


def test_a_full_pool_refuses_the_newcomer_and_keeps_the_rest():
    pool, state = Mempool(2, 1000, ECONOMICS), state_with()
    kept = [transfer(ALICE, 0), transfer(BOB, 0)]
    for tx in kept:
        pool.add(tx, state, CHAIN_ID)
    assert refusal(pool, transfer(CAROL, 0), state) == "mempool_full"
    assert len(pool) == 2 and all(tx.hash in pool for tx in kept)


def test_a_full_pool_evicts_the_cheapest_last_nonce_for_a_newcomer_that_pays_more():
    pool, state = Mempool(3, 1000, ECONOMICS), state_with()
    alice = [transfer(ALICE, 0, fee=5), transfer(ALICE, 1, fee=2)]
    bob = transfer(BOB, 0, fee=3)
    for tx in alice + [bob]:
        pool.add(tx, state, CHAIN_ID)
    # alice's last nonce pays least: it goes, her first stays applicable
    pool.add(transfer(CAROL, 0, fee=4), state, CHAIN_ID)
    assert alice[1].hash not in pool and alice[0].hash in pool and len(pool) == 3
    # now bob's 3 is the cheapest; a newcomer paying 3 does not displace it
    assert refusal(pool, transfer(ALICE, 1, fee=3), state) == "mempool_full"
    assert [tx.body.fee for tx in pool.reap(10)] == [5, 4, 3]  # the higher fee first


def test_parked_transactions_behind_a_nonce_gap_go_before_any_payable_one():
    """A gap costs nothing until filled, so high fees behind one must not hold the pool:
    a payable transaction at the minimum fee evicts them; among parked ones the fee decides."""
    pool, state = Mempool(3, 1000, ECONOMICS), state_with()
    parked = [transfer(ALICE, 1, fee=30), transfer(BOB, 1, fee=20), transfer(BOB, 2, fee=25)]
    for tx in parked:
        pool.add(tx, state, CHAIN_ID)
    assert refusal(pool, transfer(CAROL, 5, fee=10), state) == "mempool_full"  # parked, and cheaper
    payable = transfer(CAROL, 0, fee=FEE)
    pool.add(payable, state, CHAIN_ID)
    # bob's tail went: parked, and the cheaper of the two parked tails
    assert payable.hash in pool and parked[2].hash not in pool and len(pool) == 3
    pool.add(transfer(CAROL, 1, fee=FEE), state, CHAIN_ID)
    assert parked[1].hash not in pool and parked[0].hash in pool
    assert [tx.body.sender for tx in pool.reap(10)] == [CAROL.public_key] * 2


def test_the_node_s_own_transactions_always_find_room_and_stay():
    pool, state = Mempool(2, 1000, ECONOMICS), state_with()
    for key in (ALICE, BOB):
        pool.add(transfer(key, 0, fee=50), state, CHAIN_ID)
    own = [transfer(CAROL, 0, fee=FEE), transfer(CAROL, 1, fee=FEE)]
    for tx in own:
        pool.add(tx, state, CHAIN_ID, own=True)
    assert all(tx.hash in pool for tx in own) and len(pool) == 2
    # nothing left that may be evicted: even a rich newcomer waits
    assert refusal(pool, transfer(ALICE, 0, fee=90), state) == "mempool_full"


def test_a_proof_that_shows_fraud_is_never_evicted():
    pool, state = Mempool(1, 1000, ECONOMICS), state_with()
    proof = sign_tx(ALICE, CHAIN_ID, 0, FraudProof(0, TO, 0, 0, TO, (), TO, (), TO), FEE)
    pool.add(proof, state, CHAIN_ID, shows_fraud=True)
    assert refusal(pool, transfer(BOB, 0, fee=50), state) == "mempool_full"


def test_a_transaction_that_waited_too_long_expires():
    pool, state = Mempool(10, 1000, ECONOMICS), state_with()
    pool.expire(100)
    old = transfer(ALICE, 0)
    pool.add(old, state, CHAIN_ID)
    assert pool.expire(100 + EXPIRY_BLOCKS - 1) == 0
    young = transfer(BOB, 0)
    pool.add(young, state, CHAIN_ID)
    assert pool.expire(100 + EXPIRY_BLOCKS) == 1
    assert old.hash not in pool and young.hash in pool


def test_a_flood_of_funded_cheap_transactions_leaves_room_for_who_pays_and_for_the_node():
    """Issue 13's flood with coins behind it: 200 keys fill the pool at the minimum fee.
    An honest transfer paying more gets in, and so does the node's own work."""
    keys = [SigningKey(sha256(b"rich flooder %d" % i)) for i in range(200)]
    state = ChainState({account_key(k.public_key): AccountRecord(1000, 0, 0).encode()
                        for k in keys + [ALICE, CAROL]})
    pool = Mempool(100, 1000, ECONOMICS)
    refused = 0
    for key in keys:
        for nonce in range(3):
            try:
                pool.add(transfer(key, nonce), state, CHAIN_ID)
            except MempoolError as exc:
                assert exc.reason == "mempool_full"
                refused += 1
    assert len(pool) == 100 and refused == 500
    honest = transfer(ALICE, 0, fee=2 * FEE)
    pool.add(honest, state, CHAIN_ID)
    own = transfer(CAROL, 0)
    pool.add(own, state, CHAIN_ID, own=True)
    assert honest.hash in pool and own.hash in pool and len(pool) == 100
    assert pool.reap(1) == [honest]


def test_the_error_names_its_reason():
    with pytest.raises(MempoolError, match=r"^nonce_replayed: nonce 0 was already used"):
        Mempool(10, 1000, ECONOMICS).add(transfer(ALICE, 0), state_with(alice=1), CHAIN_ID)


def test_reap_takes_turns_between_senders_and_keeps_each_senders_nonces_in_order():
    pool, state = Mempool(100, 1000, ECONOMICS), state_with(alice=5, bob=0)
    # added out of order: alice 7, bob 0, alice 5, bob 1, alice 6, bob 2
    for tx in [transfer(ALICE, 7), transfer(BOB, 0), transfer(ALICE, 5), transfer(BOB, 1),
               transfer(ALICE, 6), transfer(BOB, 2)]:
        pool.add(tx, state, CHAIN_ID)
    reaped = [(tx.body.sender, tx.body.nonce) for tx in pool.reap(100)]
    a, b = ALICE.public_key, BOB.public_key
    # bob's first ready tx (nonce 0) arrived before alice's (nonce 5)
    assert reaped == [(b, 0), (a, 5), (b, 1), (a, 6), (b, 2), (a, 7)]
    assert [(tx.body.sender, tx.body.nonce) for tx in pool.reap(3)] == reaped[:3]
    assert len(pool) == 6  # reaping removes nothing


def test_reap_leaves_out_what_follows_a_nonce_gap():
    pool, state = Mempool(100, 1000, ECONOMICS), state_with()
    for tx in [transfer(ALICE, 0), transfer(ALICE, 2), transfer(BOB, 1)]:
        pool.add(tx, state, CHAIN_ID)
    assert pool.reap(100) == [transfer(ALICE, 0)]
    pool.add(transfer(ALICE, 1), state, CHAIN_ID)
    assert [tx.body.nonce for tx in pool.reap(100)] == [0, 1, 2]


def test_reap_order_is_deterministic():
    def build():
        pool, state = Mempool(100, 1000, ECONOMICS), state_with()
        for nonce in range(3):
            for key in (CAROL, ALICE, BOB):
                pool.add(transfer(key, nonce), state, CHAIN_ID)
        return pool.reap(100)
    assert build() == build()


def test_remove_committed_drops_used_nonces_and_makes_the_rest_ready():
    pool = Mempool(100, 1000, ECONOMICS)
    for nonce in range(4):
        pool.add(transfer(ALICE, nonce), state_with(), CHAIN_ID)
    pool.add(transfer(BOB, 0), state_with(), CHAIN_ID)
    pool.remove_committed(state_with(alice=2, bob=1))
    assert len(pool) == 2 and transfer(ALICE, 1).hash not in pool
    assert pool.reap(100) == [transfer(ALICE, 2), transfer(ALICE, 3)]
    pool.remove_committed(state_with(alice=4, bob=1))
    assert len(pool) == 0 and pool.reap(100) == []
    # freed room and forgotten senders: the pool takes new transactions again
    pool.add(transfer(ALICE, 4), state_with(alice=4), CHAIN_ID)
    assert pool.reap(100) == [transfer(ALICE, 4)]


def test_what_a_drained_balance_no_longer_covers_is_dropped_after_the_block():
    """Alice queues transactions spending 10, 40 and 30 here, then spends 80 through
    another node: her balance of 20 covers the first, and the rest would only sit in the
    pool until they expire."""
    pool = Mempool(100, 1000, ECONOMICS)
    queued = [transfer(ALICE, 1, amount=9), transfer(ALICE, 2, amount=39), transfer(ALICE, 3, amount=29)]
    for tx in queued:
        pool.add(tx, state_with(alice=1), CHAIN_ID)
    drained = ChainState({account_key(ALICE.public_key): AccountRecord(20, 1, 0).encode()})
    pool.remove_committed(drained)
    assert [tx.hash in pool for tx in queued] == [True, False, False]


def test_remove_committed_makes_a_replayed_transaction_refusable_again():
    pool, tx = Mempool(100, 1000, ECONOMICS), transfer(ALICE, 0)
    pool.add(tx, state_with(), CHAIN_ID)
    pool.remove_committed(state_with(alice=1))
    assert refusal(pool, tx, state_with(alice=1)) == "nonce_replayed"


def test_next_nonce_counts_the_pending_run():
    pool = Mempool(100, 1000, ECONOMICS)
    for nonce in (3, 4, 6):
        pool.add(transfer(ALICE, nonce), state_with(alice=3), CHAIN_ID)
    assert pool.next_nonce(ALICE.public_key, 3) == 5
    assert pool.next_nonce(BOB.public_key, 7) == 7


def test_discard_drops_one_transaction_and_leaves_later_nonces_waiting():
    pool, state = Mempool(100, 1000, ECONOMICS), state_with()
    for nonce in range(3):
        pool.add(transfer(ALICE, nonce), state, CHAIN_ID)
    pool.discard(transfer(ALICE, 1).hash, "nonce_skipped")
    pool.discard(b"\x00" * 32, "expired")  # unknown: nothing to do
    assert len(pool) == 2 and pool.reap(100) == [transfer(ALICE, 0)]
    pool.add(transfer(ALICE, 1, amount=2), state, CHAIN_ID)
    assert [tx.body.nonce for tx in pool.reap(100)] == [0, 1, 2]
    for nonce in (0, 2):
        pool.discard(transfer(ALICE, nonce).hash, "expired")
    pool.discard(transfer(ALICE, 1, amount=2).hash, "expired")
    assert len(pool) == 0 and pool.reap(100) == [] and pool.next_nonce(ALICE.public_key, 0) == 0


def test_the_pool_remembers_why_it_dropped_a_transaction():
    """What a sender asking after its transaction (GET /txs/{hash}) learns: each way out
    of the pool but inclusion leaves its reason code, until the transaction comes back."""
    pool, state = Mempool(2, 1000, ECONOMICS), state_with()
    cheap, dear = transfer(ALICE, 0), transfer(BOB, 0, fee=5)
    pool.add(cheap, state, CHAIN_ID)
    pool.add(transfer(CAROL, 0, fee=3), state, CHAIN_ID)
    pool.add(dear, state, CHAIN_ID)  # full: the cheapest goes
    assert pool.dropped_reason(cheap.hash) == "evicted" and pool.dropped_reason(dear.hash) is None
    pool.discard(dear.hash, "bond_locked")  # as a proposer does with a transaction its block refused
    assert pool.dropped_reason(dear.hash) == "bond_locked"
    pool.add(dear, state, CHAIN_ID)  # back again: pending, no longer dropped
    assert dear.hash in pool and pool.dropped_reason(dear.hash) is None
    # BOB spent elsewhere: its pending transfer is no longer covered
    pool.remove_committed(ChainState({account_key(BOB.public_key): AccountRecord(2, 0, 0).encode()}))
    assert pool.dropped_reason(dear.hash) == "insufficient_balance"
    late = transfer(ALICE, 0, amount=3)
    pool.add(late, state, CHAIN_ID)
    pool.expire(EXPIRY_BLOCKS)
    assert pool.dropped_reason(late.hash) == "expired"


def test_the_pool_forgets_the_oldest_drops_past_its_bound(monkeypatch):
    monkeypatch.setattr("node.state.mempool.MAX_DROPPED", 3)
    pool, state = Mempool(100, 1000, ECONOMICS), state_with()
    txs = [transfer(ALICE, nonce) for nonce in range(5)]
    for tx in txs:
        pool.add(tx, state, CHAIN_ID)
    for tx in txs:
        pool.discard(tx.hash, "expired")
    assert [pool.dropped_reason(tx.hash) for tx in txs] == [None, None, "expired", "expired", "expired"]
