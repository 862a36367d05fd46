"""An e2e manifest (TOML): the devnet to run and the perturbations to inject.

    [devnet]                    every key optional; defaults below
    validators = 4              validator processes (equal power)
    auditors = 0                light-audit processes (`uponode audit`)
    mine = false                whether the validators train units
    transfers_per_s = 0         transfer load sent to the validators' APIs (0: none)
    block_interval_ms = 500     the genesis's pause between blocks
    round_blocks = 20           the genesis's training round length, in blocks
    commit_blocks = 10          ... and its train phase (commitments accepted)
    retention_rounds = 4        ... and its retention window, in closed rounds
    max_stall_s = 30            the longest wait for a block while a quorum can meet
    settle_s = 90               after the last heal, time for a round to close everywhere
                                (and the longest an `at` perturbation waits for its moment)

    [[perturbation]]
    kind = "partition"          kill | pause | disconnect | partition | restart | cut_proposer
    start_s = 10                seconds after every node answers its API
    duration_s = 20             how long it lasts (restart: downtime, default 0)
    node = 2                    the validator (kill, pause, disconnect, restart)
    groups = [[0, 1], [2, 3]]   partition only: every validator in exactly one group
    at = "round_close"          optional: fire at the first moment after start_s when the
                                chain is within `within_blocks` blocks of a round close,
                                or when /status reports this phase (train, challenge,
                                audit, aggregate)
    within_blocks = 1           with at = "round_close" only

The kinds, each healed after duration_s:
    kill          SIGKILL the node and its compute worker; start it again on the same home
    pause         SIGSTOP them; SIGCONT
    disconnect    cut every link between the node and the other validators
    partition     cut every link between two groups
    restart       SIGTERM, wait for the exit, start it again (duration_s: the downtime)
    cut_proposer  disconnect the validator that proposes the next height, found from the
                  height and consensus round in /status when it fires

A manifest that breaks a rule is a ManifestError whose message is one line naming the
file and the key.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import tomllib
from typing import Any

KINDS = ("kill", "pause", "disconnect", "partition", "restart", "cut_proposer")
NODE_KINDS = ("kill", "pause", "disconnect", "restart")
ROUND_CLOSE = "round_close"
PHASES = ("train", "challenge", "audit", "aggregate")
MAX_SECONDS = 3600.0
MAX_VALIDATORS = 16
MAX_AUDITORS = 4
MAX_TRANSFERS_PER_S = 1000.0
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ManifestError(Exception):
    """A manifest the runner cannot use; str() is one line naming the file and key."""


@dataclasses.dataclass(frozen=True)
class DevnetSpec:
    validators: int = 4
    auditors: int = 0
    mine: bool = False
    transfers_per_s: float = 0.0
    block_interval_ms: int = 500
    round_blocks: int = 20
    commit_blocks: int = 10
    retention_rounds: int = 4
    max_stall_s: float = 30.0
    settle_s: float = 90.0


@dataclasses.dataclass(frozen=True)
class Perturbation:
    index: int
    kind: str
    start_s: float
    duration_s: float
    node: int | None = None
    groups: tuple[tuple[int, ...], ...] = ()
    at: str | None = None
    within_blocks: int = 1

    def describe(self) -> str:
        """"perturbation 1 (pause node-2)", "perturbation 0 (partition 0,1|2,3)"."""
        if self.node is not None:
            target = f" node-{self.node}"
        elif self.groups:
            target = " " + "|".join(",".join(map(str, group)) for group in self.groups)
        else:
            target = ""
        return f"perturbation {self.index} ({self.kind}{target})"


@dataclasses.dataclass(frozen=True)
class Manifest:
    name: str
    devnet: DevnetSpec
    perturbations: tuple[Perturbation, ...]


def _integer(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{where}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ManifestError(f"{where}: {value} is out of range {low}..{high}")
    return value


def _number(where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: expected a number, got {value!r}")
    if not low <= value <= high:
        raise ManifestError(f"{where}: {value} is out of range {low:g}..{high:g}")
    return float(value)


def _seconds(where: str, value: Any, low: float = 0.0) -> float:
    return _number(where, value, low, MAX_SECONDS)


def _boolean(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(f"{where}: expected true or false, got {value!r}")
    return value


def _check_keys(where: str, table: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(table, dict):
        raise ManifestError(f"{where}: expected a table")
    for key in table:
        if key not in allowed:
            # a quoted TOML key may hold any character: JSON quoting keeps it on one line
            shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
            raise ManifestError(f"{where}.{shown}: unknown key (expected one of {', '.join(allowed)})")
    return table


def _devnet(raw: Any) -> DevnetSpec:
    table = _check_keys("devnet", raw, tuple(f.name for f in dataclasses.fields(DevnetSpec)))
    readers = {
        "validators": lambda w, v: _integer(w, v, 1, MAX_VALIDATORS),
        "auditors": lambda w, v: _integer(w, v, 0, MAX_AUDITORS),
        "mine": _boolean,
        "transfers_per_s": lambda w, v: _number(w, v, 0.0, MAX_TRANSFERS_PER_S),
        "block_interval_ms": lambda w, v: _integer(w, v, 10, 60_000),
        "round_blocks": lambda w, v: _integer(w, v, 4, 10_000),
        "commit_blocks": lambda w, v: _integer(w, v, 1, 10_000),
        "retention_rounds": lambda w, v: _integer(w, v, 2, 10_000),
        "max_stall_s": lambda w, v: _seconds(w, v, 1.0),
        "settle_s": lambda w, v: _seconds(w, v, 1.0),
    }
    spec = DevnetSpec(**{key: readers[key](f"devnet.{key}", value) for key, value in table.items()})
    # the genesis loader's rule: a challenge block, an audit block and a closing block
    if spec.commit_blocks > spec.round_blocks - 3:
        raise ManifestError(f"devnet.commit_blocks: {spec.commit_blocks} leaves no audit phase "
                            f"in devnet.round_blocks {spec.round_blocks}")
    return spec


def _groups(where: str, value: Any, validators: int) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise ManifestError(f"{where}: expected two or more groups of validator indexes")
    groups = []
    for i, group in enumerate(value):
        if not isinstance(group, list) or not group:
            raise ManifestError(f"{where}[{i}]: expected a non-empty list of validator indexes")
        groups.append(tuple(_integer(f"{where}[{i}][{j}]", n, 0, validators - 1)
                            for j, n in enumerate(group)))
    listed = sorted(n for group in groups for n in group)
    if listed != list(range(validators)):
        raise ManifestError(f"{where}: every validator 0..{validators - 1} must be in exactly one group")
    return tuple(groups)


def _perturbation(index: int, raw: Any, validators: int) -> Perturbation:
    where = f"perturbation[{index}]"
    table = _check_keys(where, raw, ("kind", "start_s", "duration_s", "node", "groups", "at",
                                     "within_blocks"))
    kind = table.get("kind")
    if kind not in KINDS:
        raise ManifestError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if "start_s" not in table:
        raise ManifestError(f"{where}.start_s: missing")
    if "duration_s" not in table and kind != "restart":
        raise ManifestError(f"{where}.duration_s: missing (a {kind} needs one)")
    duration = _seconds(f"{where}.duration_s", table.get("duration_s", 0.0),
                        0.0 if kind == "restart" else 0.1)
    if (kind in NODE_KINDS) != ("node" in table):
        raise ManifestError(f"{where}.node: {'missing' if kind in NODE_KINDS else 'not allowed'} "
                            f"for a {kind}")
    if (kind == "partition") != ("groups" in table):
        raise ManifestError(f"{where}.groups: {'missing' if kind == 'partition' else 'not allowed'} "
                            f"for a {kind}")
    at = table.get("at")
    if at is not None and at != ROUND_CLOSE and at not in PHASES:
        raise ManifestError(f"{where}.at: expected {ROUND_CLOSE} or a phase "
                            f"({', '.join(PHASES)}), got {at!r}")
    if "within_blocks" in table and at != ROUND_CLOSE:
        raise ManifestError(f"{where}.within_blocks: only with at = \"{ROUND_CLOSE}\"")
    return Perturbation(
        index=index, kind=kind, start_s=_seconds(f"{where}.start_s", table["start_s"]),
        duration_s=duration,
        node=_integer(f"{where}.node", table["node"], 0, validators - 1) if "node" in table else None,
        groups=_groups(f"{where}.groups", table["groups"], validators) if "groups" in table else (),
        at=at,
        within_blocks=_integer(f"{where}.within_blocks", table.get("within_blocks", 1), 1, 10_000))


def parse_manifest(text: str, name: str) -> Manifest:
    """Validate manifest text; raises ManifestError (without the file name) and nothing else."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"not valid TOML: {exc}") from None
    _check_keys("manifest", raw, ("devnet", "perturbation"))
    devnet = _devnet(raw.get("devnet", {}))
    entries = raw.get("perturbation", [])
    if not isinstance(entries, list) or not entries:
        raise ManifestError("perturbation: expected one or more [[perturbation]] tables")
    return Manifest(name, devnet, tuple(_perturbation(i, entry, devnet.validators)
                                        for i, entry in enumerate(entries)))


def load_manifest(path: pathlib.Path) -> Manifest:
    """Read and validate the manifest at path; ManifestError names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return parse_manifest(text, path.stem)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None
