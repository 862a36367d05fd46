"""What a consensus core keeps of rounds beyond the next: each validator's latest message.

The core counts the current and next round in full.  A message of a later round matters
for one rule only, the round skip (line 55 of the paper: f+1 of the power is already in a
later round), and for that the latest round each validator reached is enough.  So each
validator holds one slot, whatever it sends; its message is handed back to be counted
once the core's round brings it within reach.
"""
from __future__ import annotations

from typing import Mapping

from node.consensus.messages import ConsensusMessage, round_of

# Rounds after the current one whose messages the core keeps in full.
ROUNDS_KEPT_AHEAD = 1


class RoundsAhead:
    def __init__(self) -> None:
        self._latest: dict[bytes, int] = {}  # validator -> the highest round heard from it
        self._held: dict[bytes, ConsensusMessage] = {}  # validator -> its latest far-ahead message

    def __len__(self) -> int:
        return len(self._held)

    def heard(self, validator: bytes, round_: int) -> None:
        """A checked message of round_ from validator was counted."""
        self._latest[validator] = max(round_, self._latest.get(validator, round_))

    def hold(self, validator: bytes, message: ConsensusMessage) -> None:
        """Keep a checked far-ahead message if it is the validator's latest yet."""
        held = self._held.get(validator)
        if held is None or round_of(held) < round_of(message):
            self._held[validator] = message
            self.heard(validator, round_of(message))

    def within(self, current_round: int) -> list[ConsensusMessage]:
        """Hand back (and forget) the held messages the current round has brought within reach."""
        ready = [v for v, m in self._held.items() if round_of(m) <= current_round + ROUNDS_KEPT_AHEAD]
        return [self._held.pop(v) for v in ready]

    def skip_target(self, current_round: int, power: Mapping[bytes, int], total_power: int) -> int | None:
        """The highest round after current_round that validators holding more than a third
        of the power have each reached (one of them is correct, so correct validators are
        in it or past it), or None."""
        reached = 0
        for validator, round_ in sorted(self._latest.items(), key=lambda item: -item[1]):
            if round_ <= current_round:
                return None
            reached += power[validator]
            if 3 * reached > total_power:
                return round_
        return None
