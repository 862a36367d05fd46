"""Who proposes in a round: a weighted rotation that every node computes alike.

Stride scheduling over a period of `total power` slots: validator i owns the slots at
times (2j + 1) / (2 * power_i) for j < power_i, and slot k of the period goes to the
owner of the k-th earliest time (ties to the validator listed first).  So every period,
each validator proposes exactly as many rounds as it has power, spread evenly rather
than in a burst, and the choice depends only on (validators, height, round): no state
carries over between heights, which a restarted or syncing node could get wrong.
"""
from __future__ import annotations

import functools
from typing import Sequence


def proposer_for(validators: Sequence[tuple[bytes, int]], height: int, round_: int) -> bytes:
    """The public key of the proposer for (height, round) among (pubkey, power) pairs."""
    return _proposer(tuple(validators), height, round_)


@functools.lru_cache(maxsize=4096)
def _proposer(validators: tuple[tuple[bytes, int], ...], height: int, round_: int) -> bytes:
    powers = [power for _, power in validators]
    if not powers or min(powers) <= 0:
        raise ValueError("a committee needs validators, each with positive power")
    slot = (height + round_) % sum(powers)
    for i, (key, power) in enumerate(validators):
        # the rank of i's j-th slot grows with j: binary search for the one of rank `slot`
        low, high = 0, power - 1
        while low <= high:
            j = (low + high) // 2
            rank = _rank(powers, i, j)
            if rank == slot:
                return key
            if rank < slot:
                low = j + 1
            else:
                high = j - 1
    raise AssertionError("every slot of the period has an owner")


def _rank(powers: list[int], i: int, j: int) -> int:
    """How many slots come before validator i's j-th slot, at time (2j+1) / (2 powers[i])."""
    rank = 0
    numerator = 2 * j + 1
    for m, power in enumerate(powers):
        if m == i:
            rank += j
            continue
        # slots j' of m before it: (2j'+1) * powers[i] < numerator * power  (<= if m is listed first)
        bound = numerator * power if m < i else numerator * power - 1
        odd_max = bound // powers[i]  # the largest allowed 2j'+1
        rank += min(power, max(0, (odd_max + 1) // 2))
    return rank
