"""Counters, gauges and histograms, rendered in the Prometheus text exposition format
(0.0.4), with no dependency.

A metric may have labels (each series is one tuple of label values); a histogram has
fixed buckets and renders its cumulative `_bucket{le=...}`, `_sum` and `_count`.  The
names the node exports are NODE_METRICS; README.md lists them.
"""
from __future__ import annotations

import math
import re

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_SERIES = 256  # per metric: a label value comes from a fixed set (a message type, a step)

# seconds: from a fraction of a block to minutes (a unit's training, an audit)
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ROUNDS_BUCKETS = (0, 1, 2, 3, 5, 10)


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape(value: str) -> str:
    # label values escape backslash, double quote and newline in this format
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)] + ([extra] if extra else [])
    return "{" + ",".join(pairs) + "}" if pairs else ""


class Metric:
    TYPE = ""

    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...] = ()):
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a Prometheus metric name: {name!r}")
        if not all(_LABEL.fullmatch(n) and not n.startswith("__") and n != "le" for n in label_names):
            raise ValueError(f"not Prometheus label names: {label_names!r}")
        self.name = name
        self.help = help_text
        self.label_names = label_names
        self.series: dict[tuple[str, ...], object] = {} if label_names else {(): self._zero()}

    def _zero(self) -> object:
        return 0

    def _series(self, labels: dict[str, str] | None) -> tuple[str, ...]:
        if sorted(labels or {}) != sorted(self.label_names):
            raise ValueError(f"{self.name} takes the labels {self.label_names}, not {sorted(labels or {})}")
        values = tuple(str(labels[n]) for n in self.label_names) if labels else ()
        if values not in self.series:
            if len(self.series) >= MAX_SERIES:
                raise ValueError(f"{self.name} has {MAX_SERIES} series already")
            self.series[values] = self._zero()
        return values

    def render(self) -> str:
        # HELP text escapes only backslash and newline in this format
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.TYPE}"]
        for values, value in self.series.items():
            lines += self._samples(values, value)
        return "\n".join(lines) + "\n"

    def _samples(self, values: tuple[str, ...], value: object) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, values)} {_format(value)}"]


class Counter(Metric):
    """A count that only goes up (since the process started)."""
    TYPE = "counter"

    def inc(self, amount: float = 1, labels: dict[str, str] | None = None) -> None:
        if amount < 0:
            raise ValueError("a counter cannot go down")
        key = self._series(labels)
        self.series[key] += amount


class Gauge(Metric):
    """A value that is set to whatever it is now."""
    TYPE = "gauge"

    def set(self, value: float, labels: dict[str, str] | None = None) -> None:
        self.series[self._series(labels)] = value


class Histogram(Metric):
    """Observations counted into fixed buckets (each bucket counts those <= its bound)."""
    TYPE = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...],
                 label_names: tuple[str, ...] = ()):
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"{name}: buckets must be distinct and ascending")
        self.buckets = tuple(buckets) + (math.inf,)
        super().__init__(name, help_text, label_names)

    def _zero(self) -> object:
        return [[0] * len(self.buckets), 0.0, 0]  # per-bucket counts, sum, count

    def observe(self, value: float, labels: dict[str, str] | None = None) -> None:
        counts, total, count = self.series[key := self._series(labels)]
        # NaN fits no bucket but +Inf's, where Prometheus counts it too
        counts[next((i for i, bound in enumerate(self.buckets) if value <= bound), -1)] += 1
        self.series[key] = [counts, total + value, count + 1]

    def _samples(self, values: tuple[str, ...], value: object) -> list[str]:
        counts, total, count = value
        lines, running = [], 0
        for bound, n in zip(self.buckets, counts):
            running += n
            le = f'le="{_format(float(bound))}"'
            lines.append(f"{self.name}_bucket{_labels(self.label_names, values, le)} {running}")
        lines.append(f"{self.name}_sum{_labels(self.label_names, values)} {_format(total)}")
        lines.append(f"{self.name}_count{_labels(self.label_names, values)} {count}")
        return lines


# what every node exports (README.md, "Metrics"): (kind, name, help, label names, buckets)
NODE_METRICS = (
    ("gauge", "uponode_height", "Height of the last finalized block.", (), None),
    ("histogram", "uponode_block_interval_seconds",
     "Time between consecutive finalized blocks, by their header times.", (), SECONDS_BUCKETS),
    ("histogram", "uponode_consensus_rounds_per_height",
     "The consensus round in which each height was decided (0: the first).", (), ROUNDS_BUCKETS),
    ("histogram", "uponode_consensus_step_seconds",
     "Time this validator spent in each consensus step of a height: propose (to its "
     "prevote), prevote (to its precommit), precommit (to the commit).", ("step",), SECONDS_BUCKETS),
    ("counter", "uponode_blocks_finalized_total", "Blocks finalized by this process.", (), None),
    ("gauge", "uponode_consensus_messages",
     "Proposals and votes consensus holds for the height being decided and the next.", (), None),
    ("gauge", "uponode_peers", "Connected peers.", (), None),
    ("counter", "uponode_peer_bytes_received_total", "Bytes of peer frames received, by message type.",
     ("type",), None),
    ("counter", "uponode_peer_bytes_sent_total", "Bytes of peer frames sent, by message type.",
     ("type",), None),
    ("counter", "uponode_peer_bans_total", "Peers banned for misbehaving.", (), None),
    ("gauge", "uponode_mempool_txs", "Transactions in the mempool.", (), None),
    ("counter", "uponode_txs_received_total", "Transactions accepted into the mempool over RPC.", (), None),
    ("counter", "uponode_txs_refused_total",
     "Transactions refused over RPC: not decodable, or refused by the mempool.", (), None),
    ("counter", "uponode_units_trained_total", "Work units this node trained.", (), None),
    ("histogram", "uponode_unit_seconds", "Time to train one work unit.", (), SECONDS_BUCKETS),
    ("gauge", "uponode_training_tokens_per_second", "Tokens a second of the last unit trained.", (), None),
    ("counter", "uponode_audits_total", "Audit tasks this node completed.", (), None),
    ("histogram", "uponode_audit_seconds", "Time to audit one unit's segments, fetches included.", (),
     SECONDS_BUCKETS),
    ("counter", "uponode_frauds_found_total", "Audits of this node that proved a unit fraudulent.", (), None),
    ("gauge", "uponode_state_entries",
     "Entries in the chain state: accounts and bonds, and the rounds the retention window keeps.", (), None),
    ("gauge", "uponode_blob_bytes", "Bytes in the blob store (checkpoints, deltas, models, snapshots).",
     (), None),
    ("gauge", "uponode_database_bytes", "Bytes of the chain's LevelDB on disk.", (), None),
    ("gauge", "uponode_model_round", "The round of the model the chain holds.", (), None),
    ("gauge", "uponode_eval_loss", "Held-out eval loss of the chain's model (NaN before round 0 closes).",
     (), None),
)


class Metrics:
    """A registry of named metrics, rendered in registration order; it starts with
    the node's metrics (NODE_METRICS) registered."""

    def __init__(self):
        self._metrics: dict[str, Metric] = {}
        for kind, name, help_text, label_names, buckets in NODE_METRICS:
            metric = (Histogram(name, help_text, buckets, label_names) if kind == "histogram"
                      else {"counter": Counter, "gauge": Gauge}[kind](name, help_text, label_names))
            self._register(metric)

    def _register(self, metric: Metric) -> Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def _get(self, name: str, kind: type) -> Metric:
        """The registered metric; KeyError for a name never registered."""
        metric = self._metrics[name]
        if not isinstance(metric, kind):
            raise TypeError(f"{name} is a {metric.TYPE}, not a {kind.TYPE}")
        return metric

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._get(name, Gauge).set(value, labels)

    def inc(self, name: str, amount: float = 1, labels: dict[str, str] | None = None) -> None:
        self._get(name, Counter).inc(amount, labels)

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._get(name, Histogram).observe(value, labels)

    def render(self) -> str:
        return "".join(metric.render() for metric in self._metrics.values())
