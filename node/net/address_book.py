"""The addresses of peers a node has heard of, for peer exchange: learned from its peers,
scored by how dialing them went, aged, bounded, and kept in the home between runs.

No I/O here but reading and writing the book's file.  What a peer tells us costs it
nothing to make up, so nothing it says is trusted: an address is only a place to try.
A reply adds at most MAX_PER_REPLY addresses; an address that fails MAX_FAILURES dials
in a row, or that nobody has advertised nor we connected to for MAX_AGE_S, is dropped;
and a full book makes room by dropping its worst entry (one never connected to before
one that was, then the most failures, then the longest unseen), so a peer that floods
made-up addresses only churns the entries nobody has reached, while the ones that
worked stay.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
from typing import Iterable

from node.net.p2p_protocol import parse_address

log = logging.getLogger(__name__)

MAX_ADDRESSES = 1000
MAX_PER_REPLY = 32
MAX_FAILURES = 5
MAX_AGE_S = 14 * 86400.0
_UNROUTABLE = {"0.0.0.0", "::", ""}  # a node listening on every interface advertises these


@dataclasses.dataclass
class BookEntry:
    last_seen: float  # unix seconds: when it was last advertised to us or connected
    failures: int = 0  # dials in a row that did not connect
    reached: bool = False  # this node has been connected to it


def dialable(address: str, own: str) -> bool:
    """Whether address is a host:port another node can dial, and not our own."""
    try:
        host, _ = parse_address(address)
    except ValueError:
        return False
    return address != own and host not in _UNROUTABLE


class AddressBook:
    def __init__(self, own: str, entries: dict[str, BookEntry] | None = None):
        self.own = own
        self.entries: dict[str, BookEntry] = entries or {}

    def learn(self, addresses: Iterable[str], now: float) -> int:
        """Note the addresses a peer advertised (the first MAX_PER_REPLY that are
        dialable); returns how many were new."""
        new = 0
        for address in [a for a in addresses if isinstance(a, str) and dialable(a, self.own)][:MAX_PER_REPLY]:
            entry = self.entries.get(address)
            if entry is not None:
                entry.last_seen = max(entry.last_seen, now)
                continue
            if len(self.entries) >= MAX_ADDRESSES:
                del self.entries[self._worst()]
            self.entries[address] = BookEntry(now)
            new += 1
        return new

    def connected(self, address: str, now: float) -> None:
        if dialable(address, self.own):
            self.entries[address] = BookEntry(now, reached=True)
            while len(self.entries) > MAX_ADDRESSES:
                del self.entries[self._worst()]

    def failed(self, address: str) -> None:
        entry = self.entries.get(address)
        if entry is not None:
            entry.failures += 1
            if entry.failures >= MAX_FAILURES:
                del self.entries[address]

    def age(self, now: float) -> None:
        for address in [a for a, e in self.entries.items() if e.last_seen < now - MAX_AGE_S]:
            del self.entries[address]

    def candidates(self, exclude: set[str], n: int) -> list[str]:
        """Up to n addresses to dial, the most promising first: fewest failures, then one
        reached before, then the most recently seen."""
        return sorted((a for a in self.entries if a not in exclude), key=self._rank)[:max(n, 0)]

    def _rank(self, address: str) -> tuple:
        entry = self.entries[address]
        return entry.failures, not entry.reached, -entry.last_seen, address

    def _worst(self) -> str:
        return max(self.entries, key=lambda a: (not self.entries[a].reached, *self._rank(a)))

    # -- the book's file

    @classmethod
    def load(cls, path: pathlib.Path, own: str) -> AddressBook:
        """The book saved at path; an empty one if there is none.  A damaged file only
        costs the addresses: the node says so and learns them again."""
        try:
            raw = json.loads(path.read_text())
            entries = {a: BookEntry(float(e["last_seen"]), int(e["failures"]), bool(e["reached"]))
                       for a, e in raw.items() if dialable(a, own)}
            if not all(math.isfinite(e.last_seen) and 0 <= e.failures < MAX_FAILURES for e in entries.values()):
                raise ValueError("an entry's last_seen or failures is out of range")
        except FileNotFoundError:
            return cls(own)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring the peer address book %s (%s); learning addresses afresh",
                        path, " ".join(str(exc).split())[:200])
            return cls(own)
        return cls(own, dict(sorted(entries.items(), key=lambda kv: -kv[1].last_seen)[:MAX_ADDRESSES]))

    def save(self, path: pathlib.Path) -> None:
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps({a: dataclasses.asdict(e) for a, e in self.entries.items()}))
        os.replace(temp, path)
