"""The genesis file: the chain's founding parameters, validated field by field.

Every field is checked for presence, type and range, and unknown keys are refused,
so a typo in a genesis file is an error that names the field, never a silently
ignored setting.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
from typing import Any

DEFAULT_GENESIS = pathlib.Path(__file__).resolve().parent.parent / "genesis" / "devnet.json"


class GenesisError(ValueError):
    """A genesis file that cannot be used; the message names the bad field."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    context_length: int
    n_layer: int
    n_head: int
    n_embd: int
    init_seed: int


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    batch_size: int
    steps_per_unit: int
    checkpoint_every: int
    learning_rate: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    weight_decay: float
    grad_clip: float
    data_seed: int


@dataclasses.dataclass(frozen=True)
class OuterConfig:
    learning_rate: float
    momentum: float


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    batches: int


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    path: str
    sha256: str
    eval_fraction: float


@dataclasses.dataclass(frozen=True)
class Genesis:
    chain_id: str
    model: ModelConfig
    training: TrainingConfig
    outer: OuterConfig
    eval: EvalConfig
    corpus: CorpusConfig
    directory: pathlib.Path
    hash: str

    def corpus_path(self) -> pathlib.Path:
        return self.directory / self.corpus.path


# (min, max) bounds per numeric field; max None means unbounded.
_INT_BOUNDS: dict[str, tuple[int, int | None]] = {
    "model.vocab_size": (2, 256),  # byte-level vocabulary
    "model.context_length": (1, 4096),
    "model.n_layer": (1, 128),
    "model.n_head": (1, 256),
    "model.n_embd": (1, 16384),
    "model.init_seed": (0, 2**64 - 1),
    "training.batch_size": (1, 4096),
    "training.steps_per_unit": (1, 10**6),
    "training.checkpoint_every": (1, 10**6),
    "training.data_seed": (0, 2**64 - 1),
    "eval.batches": (1, 10**5),
}
_FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "training.learning_rate": (0.0, 10.0),
    "training.adam_beta1": (0.0, 1.0),
    "training.adam_beta2": (0.0, 1.0),
    "training.adam_eps": (0.0, 1.0),
    "training.weight_decay": (0.0, 10.0),
    "training.grad_clip": (0.0, 1e6),
    "outer.learning_rate": (0.0, 10.0),
    "outer.momentum": (0.0, 1.0),
    "corpus.eval_fraction": (0.0, 1.0),
}
_SECTIONS = {
    "model": ModelConfig,
    "training": TrainingConfig,
    "outer": OuterConfig,
    "eval": EvalConfig,
    "corpus": CorpusConfig,
}


def _check_keys(obj: Any, where: str, expected: list[str]) -> None:
    if not isinstance(obj, dict):
        raise GenesisError(f"{where or 'genesis'}: expected a JSON object")
    for key in obj:
        if key not in expected:
            name = f"{where}.{key}" if where else key
            raise GenesisError(f"{name}: unknown key")
    for key in expected:
        if key not in obj:
            name = f"{where}.{key}" if where else key
            raise GenesisError(f"{name}: missing")


def _field(name: str, value: Any, kind: type) -> Any:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GenesisError(f"{name}: expected an integer, got {json.dumps(value)}")
        lo, hi = _INT_BOUNDS[name]
        if value < lo or (hi is not None and value > hi):
            raise GenesisError(f"{name}: {value} is out of range [{lo}, {hi}]")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GenesisError(f"{name}: expected a number, got {json.dumps(value)}")
        lo, hi = _FLOAT_BOUNDS[name]
        if not math.isfinite(value) or not lo <= value <= hi:
            raise GenesisError(f"{name}: {value} is out of range [{lo}, {hi}]")
        return float(value)
    if not isinstance(value, str) or not value:
        raise GenesisError(f"{name}: expected a non-empty string")
    return value


def _section(raw: dict, name: str, cls: type) -> Any:
    fields = dataclasses.fields(cls)
    _check_keys(raw, name, [f.name for f in fields])
    kinds = {"int": int, "float": float, "str": str}
    return cls(**{f.name: _field(f"{name}.{f.name}", raw[f.name], kinds[f.type]) for f in fields})


def _check_model(model: ModelConfig) -> None:
    if model.n_embd % model.n_head:
        raise GenesisError(
            f"model.n_head: {model.n_head} does not divide model.n_embd {model.n_embd}")


def _check_training(training: TrainingConfig) -> None:
    if training.steps_per_unit % training.checkpoint_every:
        raise GenesisError(
            f"training.checkpoint_every: {training.checkpoint_every} does not divide "
            f"training.steps_per_unit {training.steps_per_unit}")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 < getattr(training, name) < 1.0:
            raise GenesisError(f"training.{name}: must lie strictly between 0 and 1")
    if training.adam_eps == 0.0:
        raise GenesisError("training.adam_eps: must be above 0")


def _check_corpus(corpus: CorpusConfig, directory: pathlib.Path) -> None:
    if len(corpus.sha256) != 64 or any(c not in "0123456789abcdef" for c in corpus.sha256):
        raise GenesisError("corpus.sha256: expected 64 lowercase hex digits")
    if not 0.0 < corpus.eval_fraction < 1.0:
        raise GenesisError("corpus.eval_fraction: must lie strictly between 0 and 1")
    path = directory / corpus.path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GenesisError(f"corpus.path: cannot read {path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != corpus.sha256:
        raise GenesisError(
            f"corpus.sha256: {path} has sha256 {digest}, the genesis pins {corpus.sha256}")


def parse_genesis(raw_bytes: bytes, directory: pathlib.Path) -> Genesis:
    """Validate genesis JSON; corpus paths are relative to ``directory``."""
    try:
        raw = json.loads(raw_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GenesisError(f"genesis: not valid JSON: {exc}") from None
    _check_keys(raw, "", ["chain_id", *_SECTIONS])
    chain_id = _field("chain_id", raw["chain_id"], str)
    sections = {name: _section(raw[name], name, cls) for name, cls in _SECTIONS.items()}
    _check_model(sections["model"])
    _check_training(sections["training"])
    _check_corpus(sections["corpus"], directory)
    return Genesis(chain_id=chain_id, directory=directory,
                   hash=hashlib.sha256(raw_bytes).hexdigest(), **sections)


def load_genesis(path: pathlib.Path | str | None = None) -> Genesis:
    """Load and validate a genesis file (the devnet genesis by default)."""
    path = pathlib.Path(path) if path is not None else DEFAULT_GENESIS
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise GenesisError(f"genesis: cannot read {path}: {exc.strerror}") from None
    return parse_genesis(raw_bytes, path.resolve().parent)
