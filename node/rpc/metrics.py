"""Counters and gauges, rendered in the Prometheus text exposition format (0.0.4).

No labels and no dependency: a node exports a handful of numbers, and a scraper
only needs `# HELP`, `# TYPE` and `name value` lines.
"""
from __future__ import annotations

import math
import re

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class Metric:
    TYPE = ""

    def __init__(self, name: str, help_text: str):
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a Prometheus metric name: {name!r}")
        self.name = name
        self.help = help_text
        self.value: float = 0

    def render(self) -> str:
        # HELP text escapes only backslash and newline in this format
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        return (f"# HELP {self.name} {help_text}\n# TYPE {self.name} {self.TYPE}\n"
                f"{self.name} {_format(self.value)}\n")


class Counter(Metric):
    """A count that only goes up (since the process started)."""
    TYPE = "counter"

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("a counter cannot go down")
        self.value += amount


class Gauge(Metric):
    """A value that is set to whatever it is now."""
    TYPE = "gauge"

    def set(self, value: float) -> None:
        self.value = value


# what every node exports: the node sets those only it knows (peers, finalized
# blocks), the RPC layer refreshes the rest when scraped and counts what it receives
NODE_METRICS = (
    ("gauge", "uponode_height", "Height of the last finalized block."),
    ("gauge", "uponode_peers", "Connected peers."),
    ("gauge", "uponode_mempool_txs", "Transactions in the mempool."),
    ("gauge", "uponode_state_entries",
     "Entries in the chain state: accounts and bonds, and the rounds the retention window keeps."),
    ("counter", "uponode_txs_received_total", "Transactions accepted into the mempool over RPC."),
    ("counter", "uponode_txs_refused_total",
     "Transactions refused over RPC: not decodable, or refused by the mempool."),
    ("counter", "uponode_blocks_finalized_total", "Blocks finalized by this process."),
    ("gauge", "uponode_consensus_messages",
     "Proposals and votes consensus holds for the height being decided and the next."),
)


class Metrics:
    """A registry of named metrics, rendered in registration order; it starts with
    the node's metrics (NODE_METRICS) registered."""

    def __init__(self):
        self._metrics: dict[str, Metric] = {}
        for kind, name, help_text in NODE_METRICS:
            getattr(self, kind)(name, help_text)

    def _register(self, metric: Metric) -> Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str) -> Counter:
        return self._register(Counter(name, help_text))

    def gauge(self, name: str, help_text: str) -> Gauge:
        return self._register(Gauge(name, help_text))

    def set(self, name: str, value: float) -> None:
        """Set a registered gauge; KeyError for a name never registered."""
        metric = self._metrics[name]
        if not isinstance(metric, Gauge):
            raise TypeError(f"{name} is a {metric.TYPE}, not a gauge")
        metric.set(value)

    def inc(self, name: str, amount: float = 1) -> None:
        """Add to a registered counter; KeyError for a name never registered."""
        metric = self._metrics[name]
        if not isinstance(metric, Counter):
            raise TypeError(f"{name} is a {metric.TYPE}, not a counter")
        metric.inc(amount)

    def render(self) -> str:
        return "".join(metric.render() for metric in self._metrics.values())
