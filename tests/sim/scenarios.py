"""Random scenarios drawn from a seed: who is faulty, and how the network misbehaves until GST."""
from __future__ import annotations

import random

from tests.sim.network import Fault, LinkFaults, NodeSpec, Partition, Scenario

BYZANTINE_FAULTS = (Fault.TWIN, Fault.EQUIVOCATING_PROPOSER, Fault.DOUBLE_VOTER, Fault.AMNESIA)
MESSAGE_TYPES = ("proposal", "prevote", "precommit", "catchup")


def random_scenario(seed: int, byzantine_keys: int = 1, validators: int = 4) -> Scenario:
    """A scenario with `byzantine_keys` faulty validators (and the rest honest).  Within f
    (less than a third) each cheats in a random way; beyond f they are all twins, the surest
    way to break safety."""
    rng = random.Random(seed)
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
        restart = rng.randint(200, gst_ms + 3000) if fault == Fault.AMNESIA else None
        specs.append(NodeSpec(v, fault, restart))
        if fault == Fault.TWIN:
            specs.append(NodeSpec(v, fault))
    if rng.random() < 0.2:  # an honest node crashes and restarts with what it persisted
        i = rng.choice([i for i, s in enumerate(specs) if s.fault == Fault.HONEST])
        specs[i] = NodeSpec(specs[i].validator, Fault.HONEST, rng.randint(100, gst_ms + 3000))
    rng.shuffle(specs)
    n = len(specs)
    return Scenario(
        seed=seed, powers=powers, nodes=tuple(specs), gst_ms=gst_ms,
        faults=_link_faults(rng, max_drop=0.3),
        type_faults=tuple((rng.choice(MESSAGE_TYPES), _link_faults(rng, max_drop=0.9))
                          for _ in range(rng.random() < 0.3)),
        link_faults=tuple(((src, dst), _link_faults(rng, max_drop=1.0))
                          for src, dst in (rng.sample(range(n), 2) for _ in range(rng.randint(0, 2)))),
        partitions=tuple(_partition(rng, n, gst_ms) for _ in range(rng.randint(0, 2)) if gst_ms > 0),
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
