"""The simulated network's connections, as the real p2p has them.

Every pair of nodes has one connection (a WebSocket in the real node) that is up or
down.  A message sent while it is down is lost; a message in flight when it goes down
or is replaced is lost too (its epoch is stale on arrival).  Before GST a message may
break its connection (a drop: in the real p2p a lost frame means a lost connection),
which reconnects after a while, and partitions take the links between groups down
until they heal.  Each new connection tells both ends (the real p2p's on_connect).
"""
from __future__ import annotations

import dataclasses

from node.types.votes import PRECOMMIT, Vote
from node.types.proposal import Proposal


@dataclasses.dataclass(frozen=True)
class LinkFaults:
    """What happens to a message on a link before GST (after it, only the delay applies)."""
    drop: float = 0.0  # the message is lost and its connection breaks
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 20)


@dataclasses.dataclass(frozen=True)
class Partition:
    """From start_ms to heal_ms, the links between different groups are down."""
    start_ms: int
    heal_ms: int
    groups: tuple[frozenset[int], ...]

    def separates(self, now: int, a: int, b: int) -> bool:
        return self.start_ms <= now < self.heal_ms and not any(a in g and b in g for g in self.groups)


def message_type(message: object) -> str:
    if isinstance(message, Vote):
        return "prevote" if message.body.kind != PRECOMMIT else "precommit"
    return "proposal" if isinstance(message, Proposal) else "sync"


@dataclasses.dataclass
class Link:
    up: bool = False
    epoch: int = 0
    not_before_ms: int = 0  # a link that comes up late
    reconnecting: bool = False


def pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


class Links:
    def __init__(self, n: int, late: dict[tuple[int, int], int]):
        self.links = {(a, b): Link(not_before_ms=late.get((a, b), 0))
                      for a in range(n) for b in range(a + 1, n)}

    def get(self, a: int, b: int) -> Link:
        return self.links[pair(a, b)]

    def up_peers(self, a: int) -> list[int]:
        return [b for (x, y), link in self.links.items() if link.up and a in (x, y)
                for b in (y if x == a else x,)]

    def of(self, a: int) -> list[tuple[int, int]]:
        return [p for p in self.links if a in p]

    def take_down(self, a: int, b: int) -> None:
        link = self.get(a, b)
        if link.up:
            link.up, link.epoch = False, link.epoch + 1

    def bring_up(self, a: int, b: int) -> int:
        """A new connection (replacing any older one); its epoch."""
        link = self.get(a, b)
        link.up, link.epoch, link.reconnecting = True, link.epoch + 1, False
        return link.epoch
