"""The inner learning rate as a function of the chain's global step (genesis
training.lr_schedule, training.lr_warmup_steps).

A unit of round r starts at global step r x steps_per_unit (its data cursor,
node/uPoW/data.py UnitStream), so every unit of a round follows the same rates and
the rate keeps falling as the chain trains on.  Linear warmup to learning_rate over
lr_warmup_steps, then either the same rate ("constant") or learning_rate x
sqrt(warmup / (step + 1)) ("inverse_sqrt": no horizon to fix, as a chain that runs
for good needs).  Float64 + - * / and sqrt only, each IEEE correctly rounded, then
rounded to float32: the same bits on every node; no libm transcendental.
"""
from __future__ import annotations

import math

import numpy as np

from node.types.genesis import TrainingConfig


def learning_rate(training: TrainingConfig, step: float) -> np.float32:
    """The rate of the update at 0-based global step (a fractional step interpolates)."""
    peak, warmup = training.learning_rate, training.lr_warmup_steps
    done = step + 1.0  # updates made once this one is
    if done < warmup:
        return np.float32(peak * done / warmup)
    if training.lr_schedule == "inverse_sqrt":
        return np.float32(peak * math.sqrt(max(warmup, 1) / done))
    return np.float32(peak)
