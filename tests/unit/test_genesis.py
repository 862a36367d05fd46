"""The genesis loader names the first bad field and refuses what it cannot use."""
import json
import pathlib

import pytest

from node.genesis import DEFAULT_GENESIS, GenesisError, load_genesis, parse_genesis

DEVNET = json.loads(DEFAULT_GENESIS.read_text())
GENESIS_DIR = DEFAULT_GENESIS.parent


def _parse(mutate) -> None:
    raw = json.loads(json.dumps(DEVNET))
    mutate(raw)
    parse_genesis(json.dumps(raw).encode(), GENESIS_DIR)


def test_devnet_genesis_loads():
    genesis = load_genesis()
    assert genesis.model.n_embd % genesis.model.n_head == 0
    assert genesis.corpus_path().is_file()
    assert len(genesis.hash) == 64


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
    (lambda g: g["training"].update(checkpoint_every=3), "training.checkpoint_every: 3"),
    (lambda g: g["corpus"].update(sha256="ab" * 32), "corpus.sha256:"),
    (lambda g: g["corpus"].update(sha256="XYZ"), "corpus.sha256: expected 64"),
    (lambda g: g["corpus"].update(path="missing.txt"), "corpus.path: cannot read"),
    (lambda g: g.update(model=[]), "model: expected a JSON object"),
    (lambda g: g.update(chain_id=""), "chain_id: expected a non-empty string"),
])
def test_bad_field_is_named(mutate, field):
    with pytest.raises(GenesisError) as err:
        _parse(mutate)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_not_json_is_refused():
    with pytest.raises(GenesisError, match="not valid JSON"):
        parse_genesis(b"{", GENESIS_DIR)


def test_missing_file_is_refused(tmp_path: pathlib.Path):
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "nope.json")
