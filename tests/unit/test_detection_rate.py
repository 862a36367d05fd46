"""A miner faking a fraction f of a unit's segments (never the last, which is always
checked) escapes the challenge's c draws with probability (1 - f)^c: measured over
many simulated units, the detection rate is within 4 binomial standard errors."""
import math
import random

import pytest

from node.uPoW.assignment import challenged_segments

UNITS = 20_000


@pytest.mark.parametrize("n,bad,draws", [(40, 2, 1), (40, 4, 3), (20, 5, 2), (10, 5, 1), (3, 1, 2)])
def test_detection_rate_is_one_minus_escape_probability(n, bad, draws):
    rng = random.Random(f"{n}/{bad}/{draws}")
    miner = rng.randbytes(32)
    detected = 0
    for unit in range(UNITS):
        faked = set(rng.sample(range(n - 1), bad))
        challenged = challenged_segments(rng.randbytes(32), miner, unit, n, draws)
        assert challenged[-1] == n - 1
        detected += not faked.isdisjoint(challenged)
    f = bad / n
    expected = 1 - (1 - f) ** draws
    stderr = math.sqrt(expected * (1 - expected) / UNITS)
    assert abs(detected / UNITS - expected) <= 4 * stderr, (detected / UNITS, expected)
