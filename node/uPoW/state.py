"""The full training state of a unit of work, and its canonical hash.

The hash covers everything that determines the rest of the training: parameters,
both AdamW moments, the step, and the data stream's seed and cursor (the only
RNG on the training path is the batch sampler, whose counter is cursor * batch
size, so the cursor stands for it), in a fixed order with explicit little-endian encoding.  Two states hash
alike only if every bit of them is alike.
"""
from __future__ import annotations

import dataclasses
import hashlib
import struct

import numpy as np

from node.uPoW.model import ParameterLayout, init_parameters

STATE_DOMAIN = b"uponode/train-state/v1\x00"


class NonFiniteStateError(ArithmeticError):
    """A NaN or Inf in the training state: the unit failed and must not be hashed as success."""


@dataclasses.dataclass
class TrainingState:
    params: np.ndarray
    adam_m: np.ndarray
    adam_v: np.ndarray
    step: int
    data_seed: int
    data_cursor: int

    @classmethod
    def initial(cls, layout: ParameterLayout, data_seed: int,
                params: np.ndarray | None = None) -> "TrainingState":
        """Fresh optimizer state at step 0 from params (the genesis model by default)."""
        if params is None:
            params = init_parameters(layout)
        return cls(params=params.copy(), adam_m=np.zeros(layout.size, np.float32),
                   adam_v=np.zeros(layout.size, np.float32), step=0, data_seed=data_seed,
                   data_cursor=0)

    def copy(self) -> "TrainingState":
        return dataclasses.replace(self, params=self.params.copy(), adam_m=self.adam_m.copy(),
                                   adam_v=self.adam_v.copy())


def state_hash(layout: ParameterLayout, state: TrainingState) -> str:
    """SHA-256 hex of the canonical encoding; raises NonFiniteStateError on NaN/Inf."""
    digest = hashlib.sha256(STATE_DOMAIN)
    digest.update(struct.pack("<QQQ", state.step, state.data_seed, state.data_cursor))
    for group, buffer in (("param", state.params), ("adam_m", state.adam_m),
                          ("adam_v", state.adam_v)):
        if not np.isfinite(buffer).all():
            raise NonFiniteStateError(f"training state has NaN or Inf in {group} at step {state.step}")
        for spec in layout.tensors:
            name = f"{group}/{spec.name}".encode()
            digest.update(struct.pack("<H", len(name)) + name)
            digest.update(struct.pack(f"<B{len(spec.shape)}I", len(spec.shape), *spec.shape))
            digest.update(buffer[spec.offset:spec.offset + spec.size].astype("<f4").tobytes())
    return digest.hexdigest()
