"""Export of the model's weights as safetensors, loadable by plain PyTorch.

Tensor names follow GPT-2's checkpoints without the "transformer." prefix:
wte.weight (V,C), wpe.weight (T,C), h.{i}.ln_1.{weight,bias},
h.{i}.attn.c_attn.{weight (C,3C), bias}, h.{i}.attn.c_proj.{weight (C,C), bias},
h.{i}.ln_2.{weight,bias}, h.{i}.mlp.c_fc.{weight (C,4C), bias},
h.{i}.mlp.c_proj.{weight (4C,C), bias}, ln_f.{weight,bias}.  Linear weights are
(in, out): y = x @ W + b.  The language-model head is tied to wte.weight.
The file's metadata carries the model config.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
from safetensors.numpy import save

from node.uPoW.model import ParameterLayout


def export_safetensors(layout: ParameterLayout, params: np.ndarray, path: pathlib.Path | str) -> None:
    """Write params to path (temp file, fsync, rename: never a half-written model)."""
    tensors = {name: np.ascontiguousarray(view) for name, view in layout.views(params).items()}
    metadata = {k: str(v) for k, v in dataclasses.asdict(layout.config).items()}
    data = save(tensors, metadata=metadata)
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
