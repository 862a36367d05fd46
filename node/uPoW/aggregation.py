"""The round's aggregate: the outer (DiLoCo Nesterov) step over the accepted deltas,
and the held-out loss of the model it gives (DESIGN.md §2, aggregate).

Every validator recomputes both, on the CPU or the CUDA kernels (the same bits), and
votes only for the root it reproduces, so the mean is taken over the deltas in the
order given (by unit id).

One unit does bounded harm: each delta is first clipped coordinate-wise to what
honest AdamW can move a parameter in a unit's steps (node/uPoW/bounds.py; an honest
delta is unchanged), so a bad unit moves each coordinate of the mean by at most its
reach over the unit count; and with three units or more, no delta may be longer than
twice the median's, so a minority pulls the mean no harder than honest units do.  The close falls back to the current model when the
step would make it non-finite, or its eval loss non-finite or higher than the
previous measured loss by more than the genesis' outer.max_loss_rise.
"""
from __future__ import annotations

import math

import numpy as np

from kernels.backend import Backend, cpu_backend
from node.types.genesis import Genesis
from kernels.fp import kernel
from node.uPoW.bounds import adamw_bounds
from node.uPoW.model_state import ModelState
from node.uPoW.trainer import Trainer
from node.uPoW.work import float32_from_bits

# A delta far longer than the round's typical one is scaled down to this many times the
# median's norm: a unit in reach of AdamW can still point anywhere, so a minority's
# pull on the mean is bounded by the honest units' own size.  Honest deltas of one
# round have like norms, so they pass unchanged (to the bit).
NORM_FACTOR = 2.0
MAJORITY_UNITS = 3  # with fewer there is no majority to take the median from


def outer_step(genesis: Genesis, model: ModelState, deltas: list[np.ndarray],
               backend: Backend | None = None) -> ModelState:
    """The model after the outer step over the mean of deltas, in order, computed on
    backend (the CPU by default); model is untouched."""
    if not deltas:
        raise ValueError("the outer step needs at least one delta")
    size = model.params.size
    for delta in deltas:
        if delta.dtype != np.float32 or delta.shape != (size,):
            raise ValueError(f"a delta is float32 of shape ({size},), got {delta.dtype} "
                             f"of shape {delta.shape}")
    backend = backend if backend is not None else cpu_backend()
    to_device = backend.to_device
    mean = backend.zeros(size)
    backend.ops.mean_of_deltas(mean, to_device(np.stack(deltas)))
    params, momentum = to_device(model.params.copy()), to_device(model.momentum.copy())
    backend.ops.outer_nesterov(params, momentum, mean, np.float32(genesis.outer.learning_rate),
                               np.float32(genesis.outer.momentum))
    return ModelState(params=backend.to_host(params), momentum=backend.to_host(momentum))


def eval_loss_bits(trainer: Trainer, params: np.ndarray) -> int:
    """The float32 bits of the held-out loss of params."""
    # eval_loss's float is a widened float32, so narrowing it back is exact
    loss = np.float32(trainer.eval_loss(trainer.backend.to_device(params)))
    return int(loss.view(np.uint32))


def clipped_deltas(genesis: Genesis, model: ModelState, deltas: list[np.ndarray], round_: int) -> np.ndarray:
    """The deltas of round_'s units, one row each, clipped coordinate-wise to a unit's
    reach from model's parameters at the round's rates, then each scaled down to at most
    NORM_FACTOR times the median delta's L2 norm when there are MAJORITY_UNITS or more."""
    first = round_ * genesis.training.steps_per_unit
    clipped = adamw_bounds(genesis.training, genesis.model).clip_deltas(model.params, deltas, first)
    if len(clipped) >= MAJORITY_UNITS:
        norms = [_norm(row) for row in clipped]
        # the lower median: a minority of units cannot move it past an honest unit's norm
        limit = NORM_FACTOR * sorted(norms)[(len(norms) - 1) // 2]
        for row, norm in zip(clipped, norms):
            if norm > limit:
                row *= np.float32(limit / norm)
    return clipped


@kernel()
def _norm(row: np.ndarray) -> float:
    """The L2 norm of row in float64, summed in index order (the same on every node)."""
    total = 0.0
    for x in row:
        total += np.float64(x) * np.float64(x)
    return math.sqrt(total)


def close_model(trainer: Trainer, model: ModelState, deltas: list[np.ndarray],
                loss_bits: int, round_: int) -> tuple[ModelState, int] | None:
    """Round round_'s next model and its eval loss bits: the outer step over the clipped
    deltas, on the trainer's backend.  None when the close keeps model (whose eval loss
    is loss_bits, NaN if never measured): the step gives a non-finite parameter or
    momentum, or a non-finite eval loss, or one that rises past outer.max_loss_rise."""
    genesis = trainer.genesis
    stepped = outer_step(genesis, model, list(clipped_deltas(genesis, model, deltas, round_)),
                         trainer.backend)
    if not (np.isfinite(stepped.params).all() and np.isfinite(stepped.momentum).all()):
        return None
    new_bits = eval_loss_bits(trainer, stepped.params)
    new, previous = float32_from_bits(new_bits), float32_from_bits(loss_bits)
    if not math.isfinite(new):
        return None
    if math.isfinite(previous) and new > previous + genesis.outer.max_loss_rise:
        return None
    return stepped, new_bits
