"""The chain's model: parameters and outer momentum, as one content-addressed blob.

The outer (DiLoCo Nesterov) momentum is part of the model state, so the root the
chain carries pins everything the next outer step depends on.  The blob is a
magic line, then the parameters and the momentum as little-endian float32; its
root is its SHA-256.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np

from node.types.genesis import Genesis
from node.uPoW.model import ParameterLayout, init_parameters

MODEL_MAGIC = b"uponode/model/v1\x00"


class BlobFormatError(ValueError):
    """Bytes that are not a well-formed blob of the expected kind and size."""


@dataclasses.dataclass
class ModelState:
    params: np.ndarray  # float32, layout.size
    momentum: np.ndarray  # float32, layout.size: the outer optimizer's velocity


def encode_model(model: ModelState) -> bytes:
    return (MODEL_MAGIC + model.params.astype("<f4", copy=False).tobytes()
            + model.momentum.astype("<f4", copy=False).tobytes())


def decode_model(layout: ParameterLayout, blob: bytes) -> ModelState:
    expected = len(MODEL_MAGIC) + 8 * layout.size
    if not blob.startswith(MODEL_MAGIC):
        raise BlobFormatError("not a model blob: bad magic")
    if len(blob) != expected:
        raise BlobFormatError(f"model blob of {len(blob)} bytes, expected {expected}")
    body = np.frombuffer(blob, dtype="<f4", offset=len(MODEL_MAGIC)).astype(np.float32)
    if not np.isfinite(body).all():
        raise BlobFormatError("model blob holds NaN or Inf")
    return ModelState(params=body[:layout.size].copy(), momentum=body[layout.size:].copy())


def model_root(blob: bytes) -> bytes:
    return hashlib.sha256(blob).digest()


def genesis_model(genesis: Genesis) -> ModelState:
    layout = ParameterLayout(genesis.model)
    return ModelState(params=init_parameters(layout), momentum=np.zeros(layout.size, np.float32))


@functools.lru_cache(maxsize=4)
def _genesis_blob(genesis_hash: str, genesis: Genesis) -> bytes:
    return encode_model(genesis_model(genesis))


def genesis_model_blob(genesis: Genesis) -> bytes:
    return _genesis_blob(genesis.hash, genesis)


def genesis_model_root(genesis: Genesis) -> bytes:
    return model_root(genesis_model_blob(genesis))
