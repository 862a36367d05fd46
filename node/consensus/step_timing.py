"""How long this validator spends in each consensus step of a height (for its metrics):
propose, from the previous commit to its prevote (the pause between blocks included);
prevote, to its precommit; precommit, to the commit.  A height it did not vote in (one
it synced) gives no timings."""
from __future__ import annotations

from node.types.votes import PRECOMMIT, PREVOTE, VoteBody


class StepTiming:
    def __init__(self) -> None:
        self._started: float | None = None  # when the height being decided began (its predecessor's commit)
        self._voted: dict[tuple[int, int], float] = {}  # (height, kind) -> when this validator first voted

    def voted(self, body: VoteBody, now: float) -> None:
        """This validator sent a vote (once per peer: the first send counts)."""
        self._voted.setdefault((body.height, body.kind), now)

    def committed(self, height: int, now: float) -> list[tuple[str, float]]:
        """The height is decided: each step's seconds, if this validator voted in both kinds."""
        prevoted, precommitted = self._voted.get((height, PREVOTE)), self._voted.get((height, PRECOMMIT))
        started, self._started = self._started, now
        self._voted = {key: t for key, t in self._voted.items() if key[0] > height}
        if prevoted is None or precommitted is None:
            return []
        steps = [("prevote", precommitted - prevoted), ("precommit", now - precommitted)]
        return ([("propose", prevoted - started)] if started is not None else []) + steps
