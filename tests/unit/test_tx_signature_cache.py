"""The cache of checked transaction signatures: a transaction met again (in a block
after the pool) is not checked twice, and the cache holds only the last minutes' worth,
so that a node's memory does not grow with every transaction it ever saw."""
from node.types import transactions
from node.types.crypto import SigningKey, sha256
from node.types.transactions import Transfer, sign_tx

KEY = SigningKey(sha256(b"sender"))


def test_a_signature_is_checked_once_within_the_max_age_then_forgotten(monkeypatch):
    now = [1000.0]
    checks = []
    monkeypatch.setattr(transactions.time, "monotonic", lambda: now[0])
    real_verify = transactions.crypto.verify
    monkeypatch.setattr(transactions.crypto, "verify", lambda *a: checks.append(a) or real_verify(*a))
    monkeypatch.setattr(transactions, "_verified", type(transactions._verified)())
    txs = [sign_tx(KEY, "chain", n, Transfer(bytes(32), 1), 1) for n in range(3)]
    assert all(tx.signature_valid("chain") for tx in txs) and len(checks) == 3
    now[0] += transactions.VERIFIED_MAX_AGE_S - 1
    assert txs[0].signature_valid("chain") and len(checks) == 3  # remembered, and refreshed
    now[0] += 2  # txs[1] and txs[2] are past the max age now
    assert txs[0].signature_valid("chain") and len(transactions._verified) == 1
    assert txs[1].signature_valid("chain") and len(checks) == 4  # forgotten: checked again
    forged = sign_tx(KEY, "chain", 9, Transfer(bytes(32), 1), 1)
    assert not forged.signature_valid("other chain") and len(transactions._verified) == 2
