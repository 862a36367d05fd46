"""The invariants of a perturbed devnet, judged from what the public API reported.

Pure functions and one observer over API replies (dicts as the API sends them), so a
unit test can feed them made-up snapshots.  Each broken invariant is a Failure whose
line() names the invariant, the height and the node:

    invariant block_hash failed at height 7 on node-1: block 1111111111111111 but node-0 has 2222222222222222
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

from node.types.blocks import RoundClose

BPS = 10_000
DEVNET = "devnet"  # the node name of a failure of the whole devnet (liveness)
HASH_CHARS = 16  # enough of a hash to tell two apart in a failure line

BLOCK_HASH = "block_hash"
HEIGHT_MONOTONIC = "height_monotonic"
LIVENESS = "liveness"
ROUND_CLOSES = "round_closes"
SUPPLY = "supply"
AUDITED = "audited"
UNITS_ACCEPTED = "units_accepted"


@dataclasses.dataclass(frozen=True, order=True)
class Failure:
    invariant: str
    height: int
    node: str
    detail: str

    def line(self) -> str:
        return f"invariant {self.invariant} failed at height {self.height} on {self.node}: {self.detail}"


class ChainObserver:
    """Every (node, height, hash) the API reported, from /status heads polled through the
    run and /headers read at its end (from each node's first kept block: older ones are
    pruned): one hash per height across all nodes, and no
    node's height ever lower than one it reported before."""

    def __init__(self) -> None:
        self._hashes: dict[int, tuple[str, str]] = {}  # height -> (hash, first node to report it)
        self._heights: dict[str, int] = {}
        self._failures: dict[tuple[str, str, int], Failure] = {}

    @property
    def failures(self) -> list[Failure]:
        return sorted(self._failures.values())

    def observe_head(self, node: str, height: int, head_hash: str) -> None:
        """A /status reply: its height and head_hash."""
        highest = self._heights.get(node)
        if highest is not None and height < highest:
            self._fail(HEIGHT_MONOTONIC, height, node, f"height went back from {highest} to {height}")
        else:
            self._heights[node] = height
        self.observe_block(node, height, head_hash)

    def observe_headers(self, node: str, headers: Iterable[Mapping]) -> None:
        """A /headers reply's headers."""
        for header in headers:
            self.observe_block(node, header["height"], header["hash"])

    def observe_block(self, node: str, height: int, block_hash: str) -> None:
        first_hash, first_node = self._hashes.setdefault(height, (block_hash, node))
        if block_hash != first_hash:
            self._fail(BLOCK_HASH, height, node, f"block {block_hash[:HASH_CHARS]} but {first_node} "
                                                 f"has {first_hash[:HASH_CHARS]}")

    def _fail(self, invariant: str, height: int, node: str, detail: str) -> None:
        self._failures.setdefault((invariant, node, height), Failure(invariant, height, node, detail))


def _overlap(start: float, end: float, windows: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, w_end) - max(start, w_start)) for w_start, w_end in windows)


def check_liveness(new_heights: Sequence[tuple[float, int]], no_quorum: Sequence[tuple[float, float]],
                   end: float, max_stall_s: float) -> list[Failure]:
    """new_heights: (time, height) at which each new highest height was first seen;
    no_quorum: the (start, end) windows in which the perturbations left no group of
    connected, running validators with a quorum.  The chain may stall only in those:
    a wait for the next block longer than max_stall_s outside them fails."""
    failures = []
    stops = [t for t, _ in new_heights[1:]] + [end]
    for (since, height), until in zip(new_heights, stops):
        waited = until - since
        with_quorum = waited - _overlap(since, until, no_quorum)
        if with_quorum > max_stall_s:
            failures.append(Failure(
                LIVENESS, height, DEVNET,
                f"no block after it for {waited:.1f} s, {with_quorum:.1f} s of them with a quorum "
                f"able to meet (at most {max_stall_s:g} s)"))
    return failures


def check_round_closes(round_: int, close_height: int, heights: Mapping[str, int],
                       settle_s: float) -> list[Failure]:
    """After the last perturbation healed, round_ (which closes at close_height) must have
    closed on every node within settle_s."""
    return [Failure(ROUND_CLOSES, height, node,
                    f"round {round_} (closing at height {close_height}) not closed {settle_s:g} s "
                    f"after the last perturbation healed")
            for node, height in sorted(heights.items()) if height < close_height]


def check_audits(node: str, closed_rounds: Sequence[Mapping], mine: bool) -> list[Failure]:
    """closed_rounds: /rounds/{r} replies of closed rounds.  Every accepted unit has an
    audit; and where the validators mine, some unit was accepted at all."""
    failures = []
    for view in closed_rounds:
        for unit in view["units"]:
            if unit["status"] == "accepted" and not unit["audits"]:
                failures.append(Failure(AUDITED, view["close_height"], node,
                                        f"round {view['round']}: unit {unit['unit']} of miner "
                                        f"{unit['miner'][:HASH_CHARS]} accepted without an audit"))
    accepted = sum(u["status"] == "accepted" for view in closed_rounds for u in view["units"])
    if mine and closed_rounds and not accepted:
        last = closed_rounds[-1]
        failures.append(Failure(UNITS_ACCEPTED, last["close_height"], node,
                                f"no unit accepted in rounds {closed_rounds[0]['round']}.."
                                f"{last['round']} although the validators mine"))
    return failures


def burned_fees(blocks: Iterable[Mapping], fee_burn_bps: int) -> int:
    """The share of every included transaction's fee that is burned (the rest pays the proposer)."""
    return sum(tx["fee"] * fee_burn_bps // BPS for block in blocks for tx in block["txs"])


def emitted(closes: Iterable[RoundClose]) -> int:
    """Everything the round closes paid out (read from the blocks: /rounds/{r} of a round
    past the retention window is gone)."""
    return sum(payment.amount for close in closes for payment in close.payments)


def check_supply(node: str, height: int, holdings: int, genesis_supply: int, emission: int,
                 burned: int) -> list[Failure]:
    """At height, the genesis accounts' balances and bonds (where every coin is, when only
    genesis accounts transact and earn) = genesis supply + emitted - burned."""
    expected = genesis_supply + emission - burned
    if holdings == expected:
        return []
    return [Failure(SUPPLY, height, node,
                    f"balances + bonds {holdings} != genesis {genesis_supply} + emitted {emission} "
                    f"- burned fees {burned} (off by {holdings - expected:+d})")]
