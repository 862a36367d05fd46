"""Thousands of seeded runs of the simulated network: safety always, liveness after GST.

Each seed draws a scenario (tests/sim/scenarios.py): 4 validators (sometimes weighted), up to
one faulty key (twins, an equivocating proposer, a double voter, amnesia), an honest crash,
drops/delays/duplicates per message type and link, and partitions that heal by GST.
"""
from __future__ import annotations

import dataclasses

import pytest

from node.consensus.core import Evidence
from tests.sim.network import Fault, Simulation, cached_signature_checks
from tests.sim.scenarios import random_scenario

NEW_HEIGHTS = 2  # every honest node decides this many heights after GST ...
LIVENESS_BOUND_MS = 15_000  # ... within this much virtual time (the worst of 2,000 seeds: 7.7 s)
SEEDS = range(2_000)

# Seeds that failed while the simulator and core were built, kept so they never fail again:
# 58, 127: a double voter's split prevotes hid a locked node's proof of lock from the others,
#     so no block could gather +2/3 (fixed by counting a cheater toward every block it voted
#     for, as the paper does, and by relaying);
# 4: a node restarted mid-height never got back the messages it had seen before the crash;
# 451, 651: a node restarted mid-height had lost its own vote and could not sign it again,
#     stalling the round (fixed by persisting and replaying what it signs).
REGRESSION_SEEDS = [58, 127, 4, 451, 651]
# Seeds where two twin pairs (f + 1 faulty keys) do break safety: the checker can fail.
UNSAFE_TWIN_SEEDS = [44, 97]


@dataclasses.dataclass
class Outcome:
    sim: Simulation
    heights_at_gst: list[int]

    @property
    def violations(self) -> list:
        return self.sim.safety.violations()

    @property
    def live(self) -> bool:
        return all(after - before >= NEW_HEIGHTS
                   for before, after in zip(self.heights_at_gst, self.sim.honest_heights()))


def simulate(seed: int, byzantine_keys: int = 1, validators: int = 4) -> Outcome:
    scenario = random_scenario(seed, byzantine_keys, validators)
    sim = Simulation(scenario)
    sim.start()
    sim.run(until_ms=scenario.gst_ms)
    at_gst = sim.honest_heights()
    targets = [h + NEW_HEIGHTS for h in at_gst]

    def every_honest_node_decided() -> bool:
        return all(h >= t for h, t in zip(sim.honest_heights(), targets))

    sim.run(until_ms=scenario.gst_ms + LIVENESS_BOUND_MS, done=every_honest_node_decided)
    return Outcome(sim, at_gst)


def failures(seeds, byzantine_keys: int = 1, validators: int = 4) -> list[tuple[int, str]]:
    found = []
    for seed in seeds:
        outcome = simulate(seed, byzantine_keys, validators)
        if outcome.violations:
            found.append((seed, f"safety: {outcome.violations}"))
        elif not outcome.live:
            found.append((seed, f"liveness: heights {outcome.heights_at_gst} at GST, "
                                f"{outcome.sim.honest_heights()} after"))
    return found


@pytest.fixture(autouse=True, scope="module")
def fast_signature_checks():
    with cached_signature_checks():
        yield


@pytest.mark.parametrize("seed", REGRESSION_SEEDS)
def test_seeds_that_once_failed(seed):
    assert failures([seed]) == []


def test_thousands_of_seeds_are_safe_and_live_with_one_faulty_key():
    assert failures(SEEDS) == []


def test_a_run_is_a_function_of_its_seed():
    a, b = simulate(89), simulate(89)
    assert a.sim.safety.decided == b.sim.safety.decided
    assert (a.sim.now, a.sim.messages_sent) == (b.sim.now, b.sim.messages_sent)


@pytest.mark.parametrize("fault", [Fault.DOUBLE_VOTER, Fault.TWIN])
def test_cheaters_leave_evidence(fault):
    """The faulty behaviours really cheat: some honest node catches two signed votes."""
    seeds = [s for s in range(200) if any(n.fault == fault for n in random_scenario(s).nodes)]
    caught = [s for s in seeds[:20] if any(isinstance(e, Evidence) for n in simulate(s).sim.nodes
                                           if n.honest for e in n.evidence)]
    assert caught


@pytest.mark.parametrize("seed", UNSAFE_TWIN_SEEDS)
def test_two_faulty_keys_of_four_can_break_safety(seed):
    assert simulate(seed, byzantine_keys=2).violations


def test_the_safety_check_finds_a_violation_with_f_plus_one_twins():
    """Proof the check can fail: with two twin pairs among 4 validators it must, soon."""
    assert any(simulate(seed, byzantine_keys=2).violations for seed in range(1_000, 1_300))


@pytest.mark.slow
def test_many_more_seeds_are_safe_and_live():
    assert failures(range(2_000, 12_000)) == []


@pytest.mark.slow
def test_seven_validators_with_two_faulty_keys_are_safe_and_live():
    assert failures(range(1_000), byzantine_keys=2, validators=7) == []
