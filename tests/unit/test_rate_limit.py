"""Per-client rate limits on costly API endpoints, the buckets alone (over a real
server: tests/integration/test_rpc.py)."""
import pytest

from node.rpc.rate_limit import Limit, RateLimits, retry_header


def test_a_client_gets_its_burst_then_waits_for_its_rate():
    limits = RateLimits({"rounds": Limit(per_s=10, burst=3)})
    assert [limits.retry_after("a", "rounds", 0.0) for _ in range(3)] == [None] * 3
    wait = limits.retry_after("a", "rounds", 0.0)
    assert wait == pytest.approx(0.1)
    assert limits.retry_after("b", "rounds", 0.0) is None  # another client is not slowed
    assert limits.retry_after("a", "rounds", 0.1) is None  # one token back after 1/rate s


def test_kinds_are_limited_separately():
    limits = RateLimits({"rounds": Limit(1, 1), "blobs": Limit(1, 1)})
    assert limits.retry_after("a", "rounds", 0.0) is None
    assert limits.retry_after("a", "rounds", 0.0) is not None
    assert limits.retry_after("a", "blobs", 0.0) is None


def test_the_table_of_clients_is_bounded():
    limits = RateLimits({"rounds": Limit(1, 1)}, max_clients=100)
    for i in range(1000):
        limits.retry_after(f"10.0.{i // 256}.{i % 256}", "rounds", 0.0)
    assert len(limits) == 100


def test_retry_after_rounds_up_to_whole_seconds():
    assert [retry_header(s) for s in (0.01, 1.0, 1.2)] == ["1", "1", "2"]
