"""Fixtures shared by the unit tests of work units and audits: a model and unit small
enough to train in a test."""
import json
import pathlib
import shutil

import pytest

from node.types.genesis import Genesis, load_genesis
from node.uPoW.model_state import ModelState, genesis_model
from node.uPoW.trainer import Trainer

BASE = load_genesis()


def tiny_genesis(directory: pathlib.Path) -> Genesis:
    """The devnet genesis with a model and unit small enough for unit tests:
    6 steps, a checkpoint every 2 (3 segments, 4 leaves), at the devnet's peak rate
    throughout (its warmup would span the whole of these tests' training)."""
    raw = json.loads((BASE.directory / "devnet.json").read_text())
    raw["model"].update(n_layer=1, n_embd=32, n_head=2, context_length=16)
    raw["training"].update(batch_size=2, steps_per_unit=6, checkpoint_every=2, lr_schedule="constant",
                           lr_warmup_steps=0)
    raw["eval"].update(batches=2)
    corpus = directory / raw["corpus"]["path"]
    corpus.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BASE.corpus_path(), corpus)
    path = directory / "genesis.json"
    path.write_text(json.dumps(raw))
    return load_genesis(path)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory) -> Trainer:
    return Trainer(tiny_genesis(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def model(trainer) -> ModelState:
    return genesis_model(trainer.genesis)
