"""Per-client rate limits on the API's costly endpoints.

A request to /rounds/{r}, /headers, a block, a blob or a fraud proof costs the node far
more than it costs the client (a scan, a thousand header decodes, megabytes read and
hashed, a replay).  Each client address gets a token bucket per kind of request; one
that runs dry is answered 429 with the seconds until its next request would pass, and
every other client is served as before.  Cheap reads (/status, /accounts, /metrics)
are not limited.  Memory is bounded: the buckets of the clients seen least recently
are forgotten first.
"""
from __future__ import annotations

import dataclasses
import math

from node.net.p2p_protocol import TokenBuckets

MAX_CLIENTS = 10_000


@dataclasses.dataclass(frozen=True)
class Limit:
    per_s: float
    burst: float


# per client address; sized so that honest scripts and light auditors never meet them
# (scripts/bench_devnet.py offers 1,000 transfers a second over four nodes)
LIMITS = {
    "txs": Limit(1000, 2000),
    "fraud_proofs": Limit(2, 10),  # each is replayed before it is admitted
    "blocks": Limit(100, 200),
    "headers": Limit(20, 50),
    "rounds": Limit(20, 50),
    "blobs": Limit(20, 40),
}


class RateLimits:
    def __init__(self, limits: dict[str, Limit] = LIMITS, max_clients: int = MAX_CLIENTS):
        self.limits = limits
        self._buckets = TokenBuckets(max_clients)

    def __len__(self) -> int:
        """(client, kind) buckets held."""
        return len(self._buckets)

    def retry_after(self, client: str, kind: str, now: float) -> float | None:
        """None if client may make a request of kind now (and count it), else the seconds
        until it may."""
        limit = self.limits[kind]
        bucket = self._buckets.get((client, kind), limit.per_s, limit.burst)
        if bucket.allow(now):
            return None
        return (1 - bucket.tokens) / limit.per_s


def retry_header(seconds: float) -> str:
    """Retry-After takes whole seconds: round up, so a client that waits is let in."""
    return str(max(1, math.ceil(seconds)))
