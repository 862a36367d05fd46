"""The genesis file: the chain's founding parameters, validated field by field.

Every field is checked for presence, type and range, and unknown keys are refused,
so a typo in a genesis file is an error that names the field, never a silently
ignored setting.  Besides the training parameters the genesis holds the chain's
founding state: the first committee (validators), the funded accounts, the economics
of rewards, slashing and fees, and the consensus timing and limits."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
from typing import Any

from node.types.genesis_fields import (GenesisError, check_keys, check_unique, read_array, read_int,
                                      read_public_key)
from node.types.penalty import BPS, penalty_shortfall

LR_SCHEDULES = ("constant", "inverse_sqrt")  # node/uPoW/schedule.py
DEFAULT_GENESIS = pathlib.Path(__file__).resolve().parents[2] / "genesis" / "devnet.json"


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
    learning_rate: float  # the peak inner rate (node/uPoW/schedule.py)
    lr_schedule: str  # after the warmup: "constant" or "inverse_sqrt"
    lr_warmup_steps: int  # global steps of linear warmup to learning_rate
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    weight_decay: float
    grad_clip: float
    data_seed: int
    audit_segments: int  # random segments challenged per unit, besides the last one
    auditors_per_unit: int  # auditors assigned to check each unit's challenged segments

    @property
    def segments(self) -> int:
        """Segments of a unit: one per checkpoint interval, a Merkle leaf at each end."""
        return self.steps_per_unit // self.checkpoint_every


@dataclasses.dataclass(frozen=True)
class OuterConfig:
    learning_rate: float
    momentum: float
    max_loss_rise: float  # a close whose eval loss rises more than this keeps the old model


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    batches: int


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    path: str
    sha256: str
    eval_fraction: float


@dataclasses.dataclass(frozen=True)
class Validator:
    pub_key: bytes
    power: int


@dataclasses.dataclass(frozen=True)
class Account:
    address: bytes  # an ed25519 public key
    balance: int
    bond: int


@dataclasses.dataclass(frozen=True)
class EconomicsConfig:
    emission_per_round: int
    reward_units_bps: int
    reward_audits_bps: int
    reward_proposer_bps: int
    min_miner_bond: int
    min_auditor_bond: int
    fraud_slash_bps: int  # share of a cheating miner's bond taken on proven fraud
    fraud_bounty_bps: int  # share of the slashed amount paid to the prover; the rest is burned
    fraud_proof_deposit: int  # paid with a fraud proof, burned if it proves nothing
    min_tx_fee: int  # the least fee a transaction may pay: what makes traffic cost something
    fee_burn_bps: int  # share of each fee burned; the rest goes to the block's proposer
    double_sign_slash_bps: int  # share of an equivocator's bond taken; fraud_bounty_bps of it to the reporter


@dataclasses.dataclass(frozen=True)
class ConsensusConfig:
    round_blocks: int
    commit_blocks: int  # the train phase: a round's first commit_blocks blocks take commitments
    committee_size: int
    epoch_rounds: int
    max_block_txs: int
    max_tx_bytes: int
    block_interval_ms: int
    max_clock_drift_ms: int  # how far ahead of a validator's clock a proposed block's time may be
    evidence_window_blocks: int  # how many blocks after a double vote its evidence is accepted
    retention_rounds: int  # closed rounds whose records, deltas and models nodes keep (DESIGN.md §5)

    @property
    def epoch_blocks(self) -> int:
        return self.epoch_rounds * self.round_blocks


@dataclasses.dataclass(frozen=True)
class Genesis:
    chain_id: str
    model: ModelConfig
    training: TrainingConfig
    outer: OuterConfig
    eval: EvalConfig
    corpus: CorpusConfig
    validators: tuple[Validator, ...]
    accounts: tuple[Account, ...]
    economics: EconomicsConfig
    consensus: ConsensusConfig
    directory: pathlib.Path
    hash: str

    def corpus_path(self) -> pathlib.Path:
        return self.directory / self.corpus.path


# Amounts must fit the canonical encoding's u64 and stay summable without overflow.
MAX_AMOUNT = 2**63 - 1
MAX_VALIDATORS = 100
MAX_ACCOUNTS = 10_000
MAX_VALIDATOR_POWER = 10**9

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
    "training.lr_warmup_steps": (0, 10**12),
    "training.data_seed": (0, 2**64 - 1),
    "training.audit_segments": (0, 1000),
    "training.auditors_per_unit": (1, 100),
    "eval.batches": (1, 10**5),
    "economics.emission_per_round": (0, MAX_AMOUNT),
    "economics.reward_units_bps": (0, BPS),
    "economics.reward_audits_bps": (0, BPS),
    "economics.reward_proposer_bps": (0, BPS),
    "economics.min_miner_bond": (1, MAX_AMOUNT),
    "economics.min_auditor_bond": (1, MAX_AMOUNT),
    "economics.fraud_slash_bps": (0, BPS),
    "economics.fraud_bounty_bps": (0, BPS),
    "economics.fraud_proof_deposit": (0, MAX_AMOUNT),
    "economics.min_tx_fee": (0, MAX_AMOUNT),
    "economics.fee_burn_bps": (0, BPS),
    "economics.double_sign_slash_bps": (0, BPS),
    "consensus.round_blocks": (4, 10**6),  # train, challenge, audit and closing blocks
    "consensus.commit_blocks": (1, 10**6),
    "consensus.committee_size": (1, MAX_VALIDATORS),
    "consensus.epoch_rounds": (1, 10**6),
    "consensus.max_block_txs": (1, 100_000),
    "consensus.max_tx_bytes": (256, 1_048_576),
    "consensus.block_interval_ms": (10, 600_000),
    "consensus.max_clock_drift_ms": (0, 3_600_000),
    "consensus.evidence_window_blocks": (1, 10**12),  # at most one epoch: _check_rounds
    # at least 2: a round's checkpoints are pruned, from its records, at the next round's close
    "consensus.retention_rounds": (2, 10**6),
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
    "outer.max_loss_rise": (0.0, 100.0),
    "corpus.eval_fraction": (0.0, 1.0),
}
_SECTIONS = {
    "model": ModelConfig,
    "training": TrainingConfig,
    "outer": OuterConfig,
    "eval": EvalConfig,
    "corpus": CorpusConfig,
    "economics": EconomicsConfig,
    "consensus": ConsensusConfig,
}


def _field(name: str, value: Any, kind: type) -> Any:
    if kind is int:
        return read_int(name, value, *_INT_BOUNDS[name])
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
    check_keys(raw, name, [f.name for f in fields])
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
    if training.lr_schedule not in LR_SCHEDULES:
        raise GenesisError(f"training.lr_schedule: {json.dumps(training.lr_schedule)} is not one of "
                           + ", ".join(LR_SCHEDULES))


def _check_rounds(consensus: ConsensusConfig) -> None:
    # after the train phase: the challenge block, at least one audit block, the closing block
    if consensus.commit_blocks > consensus.round_blocks - 3:
        raise GenesisError(f"consensus.commit_blocks: {consensus.commit_blocks} leaves no room for "
                           f"the audit phase in consensus.round_blocks {consensus.round_blocks}")
    # the committee history the state keeps covers at most two rotations (node.state.records)
    if consensus.evidence_window_blocks > consensus.epoch_blocks:
        raise GenesisError(f"consensus.evidence_window_blocks: {consensus.evidence_window_blocks} is longer "
                           f"than an epoch (epoch_rounds x round_blocks = {consensus.epoch_blocks} blocks)")


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


def _validators(raw: Any) -> tuple[Validator, ...]:
    validators = []
    for i, entry in enumerate(read_array(raw, "validators", 1, MAX_VALIDATORS)):
        where = f"validators[{i}]"
        check_keys(entry, where, ["pub_key", "power"])
        validators.append(Validator(
            pub_key=read_public_key(f"{where}.pub_key", entry["pub_key"]),
            power=read_int(f"{where}.power", entry["power"], 1, MAX_VALIDATOR_POWER)))
    check_unique([v.pub_key for v in validators], "validators", "pub_key")
    return tuple(validators)


def _accounts(raw: Any) -> tuple[Account, ...]:
    accounts = []
    for i, entry in enumerate(read_array(raw, "accounts", 0, MAX_ACCOUNTS)):
        where = f"accounts[{i}]"
        check_keys(entry, where, ["address", "balance", "bond"])
        accounts.append(Account(
            address=read_public_key(f"{where}.address", entry["address"]),
            balance=read_int(f"{where}.balance", entry["balance"], 0, MAX_AMOUNT),
            bond=read_int(f"{where}.bond", entry["bond"], 0, MAX_AMOUNT)))
    check_unique([a.address for a in accounts], "accounts", "address")
    supply = sum(a.balance + a.bond for a in accounts)
    if supply > MAX_AMOUNT:
        raise GenesisError(f"accounts: balances and bonds total {supply}, above {MAX_AMOUNT}")
    return tuple(accounts)


def _check_economics(economics: EconomicsConfig, training: TrainingConfig) -> None:
    shares = (economics.reward_units_bps + economics.reward_audits_bps
              + economics.reward_proposer_bps)
    if shares != BPS:
        raise GenesisError(
            f"economics: reward_units_bps + reward_audits_bps + reward_proposer_bps "
            f"is {shares}, must be {BPS}")
    shortfall = penalty_shortfall(training, economics)  # faking must not pay
    if shortfall is not None:
        raise GenesisError(f"economics.min_miner_bond, economics.fraud_slash_bps: {shortfall}")


def _check_committee(validators: tuple[Validator, ...], consensus: ConsensusConfig) -> None:
    # the validators are the first committee, so they must fit in its seats
    if len(validators) > consensus.committee_size:
        raise GenesisError(f"validators: {len(validators)} entries, more than "
                           f"consensus.committee_size {consensus.committee_size}")


def parse_genesis(raw_bytes: bytes, directory: pathlib.Path) -> Genesis:
    """Validate genesis JSON; corpus paths are relative to ``directory``."""
    try:
        raw = json.loads(raw_bytes)
    except ValueError as exc:  # bad JSON or text, or an integer of over 4300 digits
        raise GenesisError(f"genesis: not valid JSON: {exc}") from None
    except RecursionError:
        raise GenesisError("genesis: not valid JSON: nested too deeply") from None
    check_keys(raw, "", ["chain_id", *_SECTIONS, "validators", "accounts"])
    chain_id = _field("chain_id", raw["chain_id"], str)
    sections = {name: _section(raw[name], name, cls) for name, cls in _SECTIONS.items()}
    _check_model(sections["model"])
    _check_training(sections["training"])
    _check_economics(sections["economics"], sections["training"])
    _check_rounds(sections["consensus"])
    validators = _validators(raw["validators"])
    _check_committee(validators, sections["consensus"])
    accounts = _accounts(raw["accounts"])
    _check_corpus(sections["corpus"], directory)
    return Genesis(chain_id=chain_id, validators=validators, accounts=accounts,
                   directory=directory, hash=hashlib.sha256(raw_bytes).hexdigest(), **sections)


def load_genesis(path: pathlib.Path | str | None = None) -> Genesis:
    """Load and validate a genesis file (the devnet genesis by default)."""
    path = pathlib.Path(path) if path is not None else DEFAULT_GENESIS
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise GenesisError(f"genesis: cannot read {path}: {exc.strerror}") from None
    return parse_genesis(raw_bytes, path.resolve().parent)
