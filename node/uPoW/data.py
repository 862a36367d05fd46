"""The data pipeline over the pinned corpus: train/eval split and batches.

A batch is a pure function of (seed, batch index): each of its B sequences starts
at an offset drawn from the counter-based RNG, so a miner cannot pick its data and
an auditor can rebuild any step's batch from the seed and the step alone.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from kernels.fp import kernel
from kernels.rng import random_u64
from node.types.genesis import Genesis


@kernel()
def _gather(tokens, targets, data, offsets):
    B, T = tokens.shape
    for b in range(B):
        start = offsets[b]
        for t in range(T):
            tokens[b, t] = data[start + t]
            targets[b, t] = data[start + t + 1]


@kernel()
def _train_offsets(seed, batch_index, batch_size, span):
    offsets = np.empty(batch_size, np.int64)
    for b in range(batch_size):
        counter = np.uint64(batch_index) * np.uint64(batch_size) + np.uint64(b)
        offsets[b] = np.int64(random_u64(seed, counter) % np.uint64(span))
    return offsets


@dataclasses.dataclass(frozen=True)
class UnitStream:
    """Where a run of training steps takes its batches: step i of it trains on
    train_batch(seed, start + i).  A unit's start is the chain's global step at its
    first step (round x steps_per_unit), which also sets its learning rates
    (node/uPoW/schedule.py); step is the AdamW step its first state is at: the count
    its carried moments come with, 0 for fresh ones."""
    seed: int
    start: int = 0
    step: int = 0


class Corpus:
    """The corpus bytes split into a training part and a held-out evaluation part."""

    def __init__(self, data: bytes, eval_fraction: float, context_length: int):
        split = len(data) - int(len(data) * eval_fraction)
        array = np.frombuffer(data, dtype=np.uint8)
        self.train = array[:split]
        self.eval = array[split:]
        for part, name in ((self.train, "training"), (self.eval, "evaluation")):
            if part.size < context_length + 2:
                raise ValueError(f"the corpus's {name} part is shorter than one sequence")

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> "Corpus":
        # load_genesis has already checked the pinned hash of this file
        return cls(genesis.corpus_path().read_bytes(), genesis.corpus.eval_fraction,
                   genesis.model.context_length)


def train_batch(corpus: Corpus, seed: int, batch_index: int, batch_size: int,
                seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, targets), each (B, T) int32: the batch_index-th batch of stream seed."""
    span = corpus.train.size - seq_len
    offsets = _train_offsets(np.uint64(seed), batch_index, batch_size, span)
    return _fill(corpus.train, offsets, batch_size, seq_len)


def eval_batch(corpus: Corpus, index: int, n_batches: int, batch_size: int,
               seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The index-th of n_batches fixed evaluation batches, evenly spaced over the eval part."""
    span = corpus.eval.size - seq_len
    total = n_batches * batch_size
    offsets = np.array([(index * batch_size + b) * (span - 1) // max(total - 1, 1)
                        for b in range(batch_size)], dtype=np.int64)
    return _fill(corpus.eval, offsets, batch_size, seq_len)


def _fill(data: np.ndarray, offsets: np.ndarray, batch_size: int,
          seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.empty((batch_size, seq_len), np.int32)
    targets = np.empty((batch_size, seq_len), np.int32)
    _gather(tokens, targets, data, offsets)
    return tokens, targets
