"""Random sequences of valid and invalid transactions (and rewards and slashes) never
break supply conservation or nonce monotonicity."""
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from node import genesis as g
from node.crypto import SigningKey, sha256
from node.ledger import ChainState, Transition, TxError
from node.transactions import Bond, RegisterMiner, Transfer, Unbond, sign_tx

KEYS = [SigningKey(sha256(b"property %d" % i)) for i in range(4)]
BASE = g.load_genesis()
GENESIS = dataclasses.replace(
    BASE, chain_id="prop", validators=(g.Validator(KEYS[3].public_key, 1),),
    accounts=tuple(g.Account(k.public_key, 1000 * (i + 1), 100 * i) for i, k in enumerate(KEYS)),
    economics=dataclasses.replace(BASE.economics, min_miner_bond=150))

OPERATION = st.tuples(
    st.sampled_from(["transfer", "bond", "unbond", "register", "emit", "slash"]),
    st.integers(0, 3), st.integers(0, 3),           # sender, other party
    st.integers(0, 5000),                            # amount
    st.sampled_from([0, 0, 0, -1, 1]),               # nonce offset: mostly valid
    st.booleans())                                   # forge the signature


def _payload(kind, other, amount):
    if kind == "transfer":
        return Transfer(KEYS[other].public_key, amount)
    if kind == "bond":
        return Bond(amount)
    if kind == "unbond":
        return Unbond(amount)
    return RegisterMiner(1 + amount % 3)


@settings(max_examples=150, deadline=None)
@given(st.lists(OPERATION, max_size=25))
def test_supply_is_conserved_and_nonces_only_grow(operations):
    state = ChainState.from_genesis(GENESIS)
    for height, (kind, sender, other, amount, nonce_offset, forge) in enumerate(operations, 1):
        t = Transition(state, GENESIS.chain_id, GENESIS, height)
        key = KEYS[sender]
        nonces = {k.public_key: state.account(k.public_key).nonce for k in KEYS}
        applied = False
        if kind == "emit":
            t.emit(key.public_key, amount)
        elif kind == "slash":
            t.slash(key.public_key, amount % 10_001, KEYS[other].public_key, (amount * 7) % 10_001)
        else:
            nonce = max(nonces[key.public_key] + nonce_offset, 0)
            tx = sign_tx(key, GENESIS.chain_id, nonce, _payload(kind, other, amount))
            if forge:
                tx = dataclasses.replace(tx, signature=bytes(64))
            try:
                t.apply_tx(tx)
                applied = True
            except TxError:
                assert t.writes == {}
        state.apply_writes(t.writes)
        supply = state.supply()
        assert state.total_holdings() == supply.expected_total
        for k in KEYS:
            expected = nonces[k.public_key] + (1 if applied and k is key else 0)
            assert state.account(k.public_key).nonce == expected
            account = state.account(k.public_key)
            assert account.balance >= 0 and account.bond >= 0
