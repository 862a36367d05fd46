"""Random scenarios drawn from a seed: who is faulty, and how the network misbehaves until GST.

The first draws (faults, partitions, link faults) are made as they always were for a given
seed; the committee size (when not given), late and replaced links and crash downtimes come
from a second generator of the same seed.
"""
from __future__ import annotations

import random

from tests.sim.links import LinkFaults, Partition
from tests.sim.network import Fault, NodeSpec, Scenario

BYZANTINE_FAULTS = (Fault.TWIN, Fault.EQUIVOCATING_PROPOSER, Fault.DOUBLE_VOTER, Fault.AMNESIA)
# played on chosen seeds only (tests/sim/test_sim_safety_liveness.py): drawing them here
# would change the scenario of every seed, and the regression seeds with it
CHOSEN_FAULTS = (Fault.FAST_CLOCK, Fault.BACKDATING_PROPOSER, Fault.ROUND_FLOODER)
MESSAGE_TYPES = ("proposal", "prevote", "precommit", "sync")
COMMITTEE_SIZES = (1, 2, 3, 4, 4, 4, 5, 6, 7)  # 4 the most: the smallest with a faulty key


def committee_size(seed: int) -> int:
    return random.Random(f"committee {seed}").choice(COMMITTEE_SIZES)


def random_scenario(seed: int, byzantine_keys: int | None = None,
                    validators: int | None = None) -> Scenario:
    """A scenario with `byzantine_keys` faulty validators (by default one where the committee
    has room for one, that is from 4 validators on; the committee size by default drawn from
    the seed).  Within f (less than a third) each cheats in a random way; beyond f they are
    all twins, the surest way to break safety."""
    if validators is None:
        validators = committee_size(seed)
    if byzantine_keys is None:
        byzantine_keys = 1 if validators >= 4 else 0
    rng = random.Random(seed)
    more = random.Random(f"links {seed}")
    weighted = validators == 4 and byzantine_keys == 1 and rng.random() < 0.25
    powers = (2, 1, 1, 1) if weighted else (1,) * validators
    gst_ms = rng.randint(0, 4000)
    faulty = rng.sample(range(1 if weighted else 0, validators), byzantine_keys)
    specs: list[NodeSpec] = []
    for v in range(validators):
        if v not in faulty:
            specs.append(NodeSpec(v))
            continue
        fault = Fault.TWIN if 3 * byzantine_keys >= validators else rng.choice(BYZANTINE_FAULTS)
        crash = rng.randint(200, gst_ms + 3000) if fault == Fault.AMNESIA else None
        specs.append(NodeSpec(v, fault, crash, more.randint(0, 1500)))
        if fault == Fault.TWIN:
            specs.append(NodeSpec(v, fault))
    if rng.random() < 0.2:  # an honest node crashes mid-height and restarts with what it persisted
        i = rng.choice([i for i, s in enumerate(specs) if s.fault == Fault.HONEST])
        specs[i] = NodeSpec(specs[i].validator, Fault.HONEST, rng.randint(100, gst_ms + 3000),
                            more.randint(0, 1500))
    rng.shuffle(specs)
    n = len(specs)
    links = [(a, b) for a in range(n) for b in range(a + 1, n)]
    return Scenario(
        seed=seed, powers=powers, nodes=tuple(specs), gst_ms=gst_ms,
        faults=_link_faults(rng, max_drop=0.3),
        type_faults=tuple((rng.choice(MESSAGE_TYPES), _link_faults(rng, max_drop=0.9))
                          for _ in range(rng.random() < 0.3)),
        link_faults=tuple(((src, dst), _link_faults(rng, max_drop=1.0)) for src, dst in
                          (rng.sample(range(n), 2) for _ in range(rng.randint(0, 2)))) if n > 1 else (),
        partitions=tuple(_partition(rng, n, gst_ms) for _ in range(rng.randint(0, 2))
                         if gst_ms > 0 and n > 1),
        late_links=tuple((link, more.randint(0, gst_ms + 3000)) for link in links
                         if more.random() < 0.3),
        replaced_links=tuple((more.choice(links), more.randint(0, gst_ms + 3000))
                             for _ in range(more.randint(0, 3)) if links),
    )


def _link_faults(rng: random.Random, max_drop: float) -> LinkFaults:
    return LinkFaults(drop=rng.uniform(0, max_drop), duplicate=rng.uniform(0, 0.2),
                      delay_ms=(1, rng.randint(5, 400)))


def _partition(rng: random.Random, n: int, gst_ms: int) -> Partition:
    start = rng.randint(0, gst_ms - 1)
    heal = rng.randint(start + 1, gst_ms)
    nodes = list(range(n))
    rng.shuffle(nodes)
    cut = rng.randint(1, n - 1)
    return Partition(start, heal, (frozenset(nodes[:cut]), frozenset(nodes[cut:])))
