"""The full training state of a unit of work, its canonical encoding and its hash.

The hash covers everything that determines the rest of the training: parameters,
both AdamW moments, the step, and the data stream's seed and cursor (the only
RNG on the training path is the batch sampler, whose counter is cursor * batch
size, so the cursor stands for it), in a fixed order with explicit little-endian encoding.  Two states hash
alike only if every bit of them is alike.  The encoding is also the checkpoint
blob a miner serves, so a leaf's hash is its blob's content address.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import struct

import numpy as np

from node.net.blob_fetch import MAX_BLOB_BYTES
from node.types.genesis import Genesis, ModelConfig
from node.uPoW.data import UnitStream
from node.uPoW.model import ParameterLayout, TensorSpec, init_parameters
from node.uPoW.model_state import BlobFormatError

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
    def initial(cls, layout: ParameterLayout, stream: UnitStream,
                params: np.ndarray | None = None, carried: "TrainingState | None" = None) -> "TrainingState":
        """The state at the start of stream, from params (the genesis model by default):
        fresh optimizer moments, or carried's (at stream.step)."""
        if params is None:
            params = init_parameters(layout)
        if carried is None:
            m, v = np.zeros(layout.size, np.float32), np.zeros(layout.size, np.float32)
        else:
            m, v = carried.adam_m.copy(), carried.adam_v.copy()
        return cls(params=params.copy(), adam_m=m, adam_v=v, step=stream.step, data_seed=stream.seed,
                   data_cursor=stream.start)

    def copy(self) -> "TrainingState":
        return dataclasses.replace(self, params=self.params.copy(), adam_m=self.adam_m.copy(),
                                   adam_v=self.adam_v.copy())


_GROUPS = ("param", "adam_m", "adam_v")
_HEADER = struct.Struct("<QQQ")  # step, data seed, data cursor


def _tensor_header(group: str, spec: TensorSpec) -> bytes:
    name = f"{group}/{spec.name}".encode()
    return (struct.pack("<H", len(name)) + name
            + struct.pack(f"<B{len(spec.shape)}I", len(spec.shape), *spec.shape))


def _encoded_parts(layout: ParameterLayout, state: TrainingState) -> list:
    """The canonical encoding's pieces, in order, as buffers over the state's own
    memory (no copy): the domain, step, data seed and cursor, then every tensor of
    the parameters and both moments, each behind its name and shape.  Raises
    NonFiniteStateError on NaN/Inf."""
    parts = [STATE_DOMAIN, _HEADER.pack(state.step, state.data_seed, state.data_cursor)]
    data = {}
    for group, buffer in zip(_GROUPS, (state.params, state.adam_m, state.adam_v)):
        if not np.isfinite(buffer).all():
            raise NonFiniteStateError(f"training state has NaN or Inf in {group} at step {state.step}")
        data[group] = np.ascontiguousarray(buffer, dtype="<f4")
    for group, spec, header in _headers(layout):
        parts.append(header)
        parts.append(data[group][spec.offset:spec.offset + spec.size])
    return parts


def encode_state(layout: ParameterLayout, state: TrainingState) -> bytes:
    """The canonical encoding (host buffers): a checkpoint blob; raises
    NonFiniteStateError on NaN/Inf."""
    return b"".join(_encoded_parts(layout, state))


def state_hash(layout: ParameterLayout, state: TrainingState) -> str:
    """SHA-256 hex of the canonical encoding, hashed piece by piece (a miner hashes a
    state at every checkpoint step: joining 10 MB first cost a millisecond a step);
    raises NonFiniteStateError on NaN/Inf."""
    digest = hashlib.sha256()
    for part in _encoded_parts(layout, state):
        digest.update(part)
    return digest.hexdigest()


def _headers(layout: ParameterLayout) -> tuple[tuple[str, TensorSpec, bytes], ...]:
    """Every tensor's (group, spec, header), in the encoding's order."""
    return _headers_of(layout.config)


@functools.lru_cache(maxsize=4)
def _headers_of(model: ModelConfig) -> tuple[tuple[str, TensorSpec, bytes], ...]:
    # built once per model: a miner encodes or hashes a state at every checkpoint step
    return tuple((group, spec, _tensor_header(group, spec))
                 for group in _GROUPS for spec in ParameterLayout(model).tensors)


def state_blob_size(layout: ParameterLayout) -> int:
    """The bytes of every encoded training state of this layout."""
    return (len(STATE_DOMAIN) + _HEADER.size + sum(len(h) for _, _, h in _headers(layout))
            + 4 * len(_GROUPS) * layout.size)


def blob_limit(genesis: Genesis) -> int:
    """The most bytes a blob of this chain may hold, as nodes fetch and accept them: a
    training state (a checkpoint), the largest blob a chain makes (a model holds two of
    its three groups, a delta one), or MAX_BLOB_BYTES, which bounds the rest (leaves,
    snapshot manifests and chunks), whichever is more."""
    return _blob_limit(genesis.model)


@functools.lru_cache(maxsize=4)
def _blob_limit(model: ModelConfig) -> int:
    # asked at every blob fetch and upload: the layout is built once per model
    return max(MAX_BLOB_BYTES, state_blob_size(ParameterLayout(model)))


def decode_state(layout: ParameterLayout, blob: bytes) -> TrainingState:
    """The state encode_state wrote, for this layout; BlobFormatError if blob is not one."""
    headers = _headers(layout)
    expected = state_blob_size(layout)
    if not blob.startswith(STATE_DOMAIN):
        raise BlobFormatError("not a training state blob: bad domain")
    if len(blob) != expected:
        raise BlobFormatError(f"training state blob of {len(blob)} bytes, expected {expected}")
    step, data_seed, cursor = _HEADER.unpack_from(blob, len(STATE_DOMAIN))
    offset = len(STATE_DOMAIN) + _HEADER.size
    buffers = {group: np.empty(layout.size, np.float32) for group in _GROUPS}
    for group, spec, header in headers:
        if blob[offset:offset + len(header)] != header:
            raise BlobFormatError(f"training state blob: expected tensor {group}/{spec.name} "
                                  f"of shape {spec.shape} at byte {offset}")
        offset += len(header)
        buffers[group][spec.offset:spec.offset + spec.size] = np.frombuffer(
            blob, "<f4", spec.size, offset)
        offset += 4 * spec.size
    for group, buffer in buffers.items():
        if not np.isfinite(buffer).all():
            raise BlobFormatError(f"training state blob holds NaN or Inf in {group}")
    return TrainingState(params=buffers["param"], adam_m=buffers["adam_m"],
                         adam_v=buffers["adam_v"], step=step, data_seed=data_seed,
                         data_cursor=cursor)
