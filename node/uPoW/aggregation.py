"""The round's aggregate: the outer (DiLoCo Nesterov) step over the accepted deltas,
and the held-out loss of the model it gives (DESIGN.md §2, aggregate).

Every validator recomputes both, on the CPU or the CUDA kernels (the same bits), and
votes only for the root it reproduces, so the mean is taken over the deltas in the
order given (by unit id).
"""
from __future__ import annotations

import numpy as np

from kernels.backend import Backend, cpu_backend
from node.types.genesis import Genesis
from node.uPoW.model_state import ModelState
from node.uPoW.trainer import Trainer


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
