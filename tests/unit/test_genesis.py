"""The genesis loader names the first bad field and refuses what it cannot use."""
import fractions
import hashlib
import json
import pathlib

import pytest

from node.types.crypto import SigningKey
from node.types.genesis import DEFAULT_GENESIS, GenesisError, load_genesis, parse_genesis
from node.types.penalty import effective_detection, unit_reward_cap, unit_slash

DEVNET = json.loads(DEFAULT_GENESIS.read_text())
GENESIS_DIR = DEFAULT_GENESIS.parent
# a point off the curve, and the identity (small order: any signature of it is forgeable)
NOT_ON_CURVE = "02" + "00" * 31
IDENTITY = "01" + "00" * 31


def _parse(mutate) -> None:
    raw = json.loads(json.dumps(DEVNET))
    mutate(raw)
    parse_genesis(json.dumps(raw).encode(), GENESIS_DIR)


def _fresh_key() -> str:
    return SigningKey.generate().public_key.hex()


def _account(address: str | None = None, balance: int = 1, bond: int = 0) -> dict:
    return {"address": address or _fresh_key(), "balance": balance, "bond": bond}


def _add_validators(g: dict, count: int) -> None:
    g["consensus"]["committee_size"] = 100
    g["validators"] += [{"pub_key": _fresh_key(), "power": 1} for _ in range(count)]


def test_devnet_genesis_loads():
    genesis = load_genesis()
    assert genesis.model.n_embd % genesis.model.n_head == 0
    assert genesis.corpus_path().is_file()
    assert len(genesis.hash) == 64


def test_devnet_founding_state():
    genesis = load_genesis()
    devnet_key = SigningKey(hashlib.sha256(b"uponode devnet validator 0").digest())
    assert [(v.pub_key, v.power) for v in genesis.validators] == [(devnet_key.public_key, 10)]
    assert [a.address for a in genesis.accounts] == [devnet_key.public_key]
    economics = genesis.economics
    assert (economics.reward_units_bps + economics.reward_audits_bps
            + economics.reward_proposer_bps) == 10_000
    assert genesis.accounts[0].bond >= economics.min_miner_bond
    assert genesis.consensus.round_blocks == 42
    assert genesis.consensus.commit_blocks == 30
    assert len(genesis.validators) <= genesis.consensus.committee_size


def test_genesis_hash_is_the_sha256_of_the_file():
    assert load_genesis().hash == hashlib.sha256(DEFAULT_GENESIS.read_bytes()).hexdigest()


def test_limits_are_accepted_at_their_bounds():
    def at_bounds(g):
        _add_validators(g, 99)
        g["validators"][0]["power"] = 10**9
        g["accounts"] = [_account(balance=2**63 - 2, bond=1)]
        g["economics"].update(reward_units_bps=10_000, reward_audits_bps=0, reward_proposer_bps=0,
                              fraud_slash_bps=10_000, fraud_bounty_bps=0, emission_per_round=0,
                              double_sign_slash_bps=10_000)
        # an evidence window of a whole epoch: 5 rounds of 4 blocks
        g["consensus"].update(round_blocks=4, commit_blocks=1, max_tx_bytes=1_048_576, block_interval_ms=10,
                              evidence_window_blocks=20)
    _parse(at_bounds)
    _parse(lambda g: g.update(accounts=[]))


@pytest.mark.parametrize("mutate,field", [
    (lambda g: g["model"].update(n_heads=4), "model.n_heads: unknown key"),
    (lambda g: g.update(extra=1), "extra: unknown key"),
    (lambda g: g["training"].pop("batch_size"), "training.batch_size: missing"),
    (lambda g: g["model"].update(n_layer="4"), "model.n_layer: expected an integer"),
    (lambda g: g["model"].update(n_layer=True), "model.n_layer: expected an integer"),
    (lambda g: g["model"].update(vocab_size=300), "model.vocab_size: 300 is out of range"),
    (lambda g: g["training"].update(learning_rate=-1), "training.learning_rate: -1"),
    (lambda g: g["training"].update(adam_beta1=1.0), "training.adam_beta1: must lie strictly"),
    (lambda g: g["training"].update(adam_eps=0), "training.adam_eps: must be above 0"),
    (lambda g: g["model"].update(n_head=3), "model.n_head: 3 does not divide"),
    (lambda g: g["training"].update(checkpoint_every=7), "training.checkpoint_every: 7"),
    (lambda g: g["consensus"].update(commit_blocks=40), "consensus.commit_blocks: 40 leaves no room"),
    (lambda g: g["corpus"].update(sha256="ab" * 32), "corpus.sha256:"),
    (lambda g: g["corpus"].update(sha256="XYZ"), "corpus.sha256: expected 64"),
    (lambda g: g["corpus"].update(path="missing.txt"), "corpus.path: cannot read"),
    (lambda g: g.update(model=[]), "model: expected a JSON object"),
    (lambda g: g.update(chain_id=""), "chain_id: expected a non-empty string"),
    # validators
    (lambda g: g.pop("validators"), "validators: missing"),
    (lambda g: g.update(validators={}), "validators: expected a JSON array"),
    (lambda g: g.update(validators=[]), "validators: expected 1 to 100 entries, got 0"),
    (lambda g: _add_validators(g, 100), "validators: expected 1 to 100 entries, got 101"),
    (lambda g: g["validators"].append(5), "validators[1]: expected a JSON object"),
    (lambda g: g["validators"][0].update(weight=1), "validators[0].weight: unknown key"),
    (lambda g: g["validators"][0].pop("power"), "validators[0].power: missing"),
    (lambda g: g["validators"][0].pop("pub_key"), "validators[0].pub_key: missing"),
    (lambda g: g["validators"][0].update(power="10"), "validators[0].power: expected an integer"),
    (lambda g: g["validators"][0].update(power=1.0), "validators[0].power: expected an integer"),
    (lambda g: g["validators"][0].update(power=0), "validators[0].power: 0 is out of range"),
    (lambda g: g["validators"][0].update(power=10**9 + 1), "validators[0].power: 1000000001 is out"),
    (lambda g: g["validators"][0].update(pub_key=123), "validators[0].pub_key: expected 64 lowercase"),
    (lambda g: g["validators"][0].update(pub_key="ab" * 31), "validators[0].pub_key: expected 64"),
    (lambda g: g["validators"][0].update(pub_key="AB" * 32), "validators[0].pub_key: expected 64"),
    (lambda g: g["validators"][0].update(pub_key="zz" * 32), "validators[0].pub_key: expected 64"),
    (lambda g: g["validators"][0].update(pub_key="00" * 32),
     "validators[0].pub_key: not a valid ed25519 public key"),
    (lambda g: g["validators"][0].update(pub_key=NOT_ON_CURVE),
     "validators[0].pub_key: not a valid ed25519 public key"),
    (lambda g: g["validators"][0].update(pub_key=IDENTITY),
     "validators[0].pub_key: not a valid ed25519 public key"),
    (lambda g: (_add_validators(g, 2), g["validators"].append(dict(g["validators"][0]))),
     "validators[3].pub_key: duplicate of validators[0]"),
    (lambda g: (g["consensus"].update(committee_size=1),
                g["validators"].append({"pub_key": _fresh_key(), "power": 1})),
     "validators: 2 entries, more than consensus.committee_size 1"),
    # accounts
    (lambda g: g.pop("accounts"), "accounts: missing"),
    (lambda g: g.update(accounts="none"), "accounts: expected a JSON array"),
    (lambda g: g.update(accounts=[{}] * 10_001), "accounts: expected 0 to 10000 entries, got 10001"),
    (lambda g: g["accounts"][0].update(nonce=0), "accounts[0].nonce: unknown key"),
    (lambda g: g["accounts"][0].pop("bond"), "accounts[0].bond: missing"),
    (lambda g: g["accounts"][0].update(balance=None), "accounts[0].balance: expected an integer"),
    (lambda g: g["accounts"][0].update(balance=-1), "accounts[0].balance: -1 is out of range"),
    (lambda g: g["accounts"][0].update(bond=2**63), "accounts[0].bond: 9223372036854775808 is out"),
    (lambda g: g["accounts"][0].update(address="0x" + "ab" * 31), "accounts[0].address: expected 64"),
    (lambda g: g["accounts"].append(_account(NOT_ON_CURVE)),
     "accounts[1].address: not a valid ed25519 public key"),
    (lambda g: g["accounts"].append(_account(g["accounts"][0]["address"])),
     "accounts[1].address: duplicate of accounts[0]"),
    (lambda g: g.update(accounts=[_account(balance=2**62, bond=2**62)]),
     "accounts: balances and bonds total 9223372036854775808"),
    (lambda g: g.update(accounts=[_account(balance=2**62), _account(balance=0, bond=2**62)]),
     "accounts: balances and bonds total 9223372036854775808"),
    # economics
    (lambda g: g.pop("economics"), "economics: missing"),
    (lambda g: g.update(economics=None), "economics: expected a JSON object"),
    (lambda g: g["economics"].update(inflation=1), "economics.inflation: unknown key"),
    (lambda g: g["economics"].pop("min_miner_bond"), "economics.min_miner_bond: missing"),
    (lambda g: g["economics"].update(emission_per_round=1.5),
     "economics.emission_per_round: expected an integer"),
    (lambda g: g["economics"].update(emission_per_round=-1),
     "economics.emission_per_round: -1 is out of range"),
    (lambda g: g["economics"].update(min_miner_bond=0), "economics.min_miner_bond: 0 is out of range"),
    (lambda g: g["economics"].update(fraud_slash_bps=10_001), "economics.fraud_slash_bps: 10001 is out"),
    (lambda g: g["economics"].update(fraud_bounty_bps=-1), "economics.fraud_bounty_bps: -1 is out"),
    (lambda g: g["economics"].update(reward_audits_bps=-1), "economics.reward_audits_bps: -1 is out"),
    (lambda g: g["economics"].update(reward_proposer_bps=999),
     "economics: reward_units_bps + reward_audits_bps + reward_proposer_bps is 9999, must be 10000"),
    (lambda g: g["economics"].update(reward_units_bps=8000),
     "economics: reward_units_bps + reward_audits_bps + reward_proposer_bps is 11000"),
    # consensus
    (lambda g: g.pop("consensus"), "consensus: missing"),
    (lambda g: g["consensus"].update(block_time=1), "consensus.block_time: unknown key"),
    (lambda g: g["consensus"].pop("epoch_rounds"), "consensus.epoch_rounds: missing"),
    (lambda g: g["consensus"].update(round_blocks=True), "consensus.round_blocks: expected an integer"),
    (lambda g: g["consensus"].update(round_blocks=2), "consensus.round_blocks: 2 is out of range"),
    (lambda g: g["consensus"].update(committee_size=0), "consensus.committee_size: 0 is out"),
    (lambda g: g["consensus"].update(committee_size=101), "consensus.committee_size: 101 is out"),
    (lambda g: g["consensus"].update(epoch_rounds=0), "consensus.epoch_rounds: 0 is out"),
    (lambda g: g["consensus"].update(max_block_txs=100_001), "consensus.max_block_txs: 100001 is out"),
    (lambda g: g["consensus"].update(max_tx_bytes=255), "consensus.max_tx_bytes: 255 is out"),
    (lambda g: g["consensus"].update(max_tx_bytes=1_048_577), "consensus.max_tx_bytes: 1048577"),
    (lambda g: g["consensus"].update(block_interval_ms=9), "consensus.block_interval_ms: 9 is out"),
    (lambda g: g["consensus"].update(block_interval_ms="500"),
     "consensus.block_interval_ms: expected an integer"),
    (lambda g: g["consensus"].pop("evidence_window_blocks"), "consensus.evidence_window_blocks: missing"),
    (lambda g: g["consensus"].update(evidence_window_blocks=0), "consensus.evidence_window_blocks: 0 is out"),
    (lambda g: g["consensus"].update(evidence_window_blocks=211),
     "consensus.evidence_window_blocks: 211 is longer than an epoch (epoch_rounds x round_blocks = 210 blocks)"),
    (lambda g: g["consensus"].update(epoch_rounds=1),
     "consensus.evidence_window_blocks: 60 is longer than an epoch"),
    (lambda g: g["economics"].pop("double_sign_slash_bps"), "economics.double_sign_slash_bps: missing"),
    (lambda g: g["economics"].update(double_sign_slash_bps=10_001),
     "economics.double_sign_slash_bps: 10001 is out"),
])
def test_bad_field_is_named(mutate, field):
    with pytest.raises(GenesisError) as err:
        _parse(mutate)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("raw", [b"{", b"\xff", b"[" * 100_000, b'{"chain_id": ' + b"1" * 5000 + b"}"])
def test_not_json_is_refused(raw):
    with pytest.raises(GenesisError, match="not valid JSON"):
        parse_genesis(raw, GENESIS_DIR)


def test_an_unknown_key_is_quoted_onto_one_line():
    with pytest.raises(GenesisError, match=r'^model\."a\\nb": unknown key$'):
        _parse(lambda g: g["model"].update({"a\nb": 1}))


def test_missing_file_is_refused(tmp_path: pathlib.Path):
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "nope.json")


def test_the_devnet_economics_make_faking_a_unit_lose():
    genesis = load_genesis()
    d = effective_detection(genesis.training)
    assert d == fractions.Fraction(1, 96) * fractions.Fraction(2, 3)
    # what a fake earns when it escapes against what it loses when it is caught
    expected_gain = (1 - d) * unit_reward_cap(genesis.economics) - d * unit_slash(genesis.economics)
    assert expected_gain < 0


@pytest.mark.parametrize("mutate", [
    lambda g: g["economics"].update(min_miner_bond=1000),
    lambda g: g["economics"].update(fraud_slash_bps=5000),
    lambda g: g["economics"].update(emission_per_round=10**8),
    lambda g: g["training"].update(steps_per_unit=400, checkpoint_every=1),
])
def test_a_genesis_where_faking_pays_is_refused_in_one_line(mutate):
    with pytest.raises(GenesisError) as refused:
        _parse(mutate)
    message = str(refused.value)
    assert message.startswith("economics.min_miner_bond, economics.fraud_slash_bps: a unit risks a slash")
    assert "\n" not in message


def test_more_audit_draws_allow_a_smaller_bond():
    def cheaper(g):
        g["training"].update(audit_segments=8)
        g["economics"].update(min_miner_bond=20_000_000)
    _parse(cheaper)
    with pytest.raises(GenesisError, match="a unit risks a slash"):
        _parse(lambda g: g["economics"].update(min_miner_bond=20_000_000))
