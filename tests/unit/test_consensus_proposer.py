"""Proposer rotation: weighted by power, even, and a pure function of (validators, height, round)."""
from __future__ import annotations

from collections import Counter

import pytest

from node.consensus.proposer import proposer_for


def committee(*powers: int) -> list[tuple[bytes, int]]:
    return [(bytes([i + 1]) * 32, power) for i, power in enumerate(powers)]


@pytest.mark.parametrize("powers", [(1, 1, 1, 1), (3, 1, 2, 7, 1), (10, 1), (5, 5, 5, 4, 1, 1, 1)])
def test_each_validator_proposes_in_proportion_to_its_power(powers):
    validators = committee(*powers)
    total = sum(powers)
    periods = 7
    counts = Counter(proposer_for(validators, 1, r) for r in range(total * periods))
    assert counts == {key: power * periods for key, power in validators}
    # and over any window of heights as well as rounds
    counts = Counter(proposer_for(validators, h, 2) for h in range(100, 100 + total * periods))
    assert counts == {key: power * periods for key, power in validators}


def test_turns_are_spread_out_rather_than_bunched():
    validators = committee(2, 2, 1)
    order = [proposer_for(validators, 0, r) for r in range(5)]
    assert all(a != b for a, b in zip(order, order[1:]))


def test_equal_powers_rotate_in_committee_order():
    validators = committee(1, 1, 1, 1)
    assert [proposer_for(validators, 0, r) for r in range(8)] == [key for key, _ in validators] * 2


def test_large_powers_are_proportional_over_a_sample():
    validators = committee(10**9, 2 * 10**9, 10**9)
    counts = Counter(proposer_for(validators, h, 0) for h in range(4000))
    assert counts[validators[1][0]] == 2000
    assert counts[validators[0][0]] == counts[validators[2][0]] == 1000


def test_a_committee_without_power_is_refused():
    with pytest.raises(ValueError):
        proposer_for(committee(1, 0), 1, 0)
