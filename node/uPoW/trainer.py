"""The trainer: the exact inner training a miner does, step by step.

One step: the batch of (data seed, cursor), forward, backward, global-norm clip,
AdamW.  Every `checkpoint_every` steps the full state is hashed; those hashes are
the leaves a miner commits to and an auditor re-derives.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from kernels.backend import Backend, cpu_backend
from kernels.fpenv import require_ieee_subnormals
from node.types.genesis import Genesis
from node.uPoW.data import Corpus, UnitStream, eval_batch, train_batch
from node.uPoW.evidence import gradient_digest
from node.uPoW.model import GPT, ParameterLayout
from node.uPoW.schedule import learning_rate
from node.uPoW.state import NonFiniteStateError, TrainingState, state_hash


@dataclasses.dataclass(frozen=True)
class StepResult:
    step: int  # the state's step after this update
    loss: float
    grad_norm: float
    state_hash: str | None  # set at checkpoint steps
    gradient_digest: bytes | None = None  # set at checkpoint steps (node/uPoW/evidence.py)


class Trainer:
    """Runs training steps of the genesis model configuration on a backend's kernels
    (the CPU by default); the training state lives on that backend."""

    def __init__(self, genesis: Genesis, corpus: Corpus | None = None,
                 backend: Backend | None = None):
        require_ieee_subnormals()
        self.backend = backend if backend is not None else cpu_backend()
        self.genesis = genesis
        self.layout = ParameterLayout(genesis.model)
        self.corpus = corpus if corpus is not None else Corpus.from_genesis(genesis)
        tc = genesis.training
        self.batch_size = tc.batch_size
        self.seq_len = genesis.model.context_length
        self.model = GPT(self.layout, self.batch_size, self.seq_len, self.backend)
        self.grads = self.backend.zeros(self.layout.size)
        f32 = np.float32
        self.beta1, self.beta2 = f32(tc.adam_beta1), f32(tc.adam_beta2)
        self.eps, self.weight_decay = f32(tc.adam_eps), f32(tc.weight_decay)
        self.grad_clip = f32(tc.grad_clip)
        self.checkpoint_every = tc.checkpoint_every

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def initial_state(self, stream: UnitStream | None = None, params: np.ndarray | None = None,
                      carried: TrainingState | None = None) -> TrainingState:
        """The state at the start of stream (the genesis's data seed from step 0 by
        default), with fresh moments or carried's."""
        if stream is None:
            stream = UnitStream(self.genesis.training.data_seed)
        state = TrainingState.initial(self.layout, stream, params, carried)
        to_device = self.backend.to_device
        state.params, state.adam_m, state.adam_v = (
            to_device(state.params), to_device(state.adam_m), to_device(state.adam_v))
        return state

    def host_state(self, state: TrainingState) -> TrainingState:
        """state with its buffers copied to host memory (itself on the CPU backend)."""
        to_host = self.backend.to_host
        return dataclasses.replace(state, params=to_host(state.params),
                                   adam_m=to_host(state.adam_m), adam_v=to_host(state.adam_v))

    def state_hash(self, state: TrainingState) -> str:
        return state_hash(self.layout, self.host_state(state))

    def step(self, state: TrainingState) -> StepResult:
        """Advance state by one training step, in place, at the schedule's rate for its
        data cursor."""
        lr = learning_rate(self.genesis.training, state.data_cursor)
        tokens, targets = train_batch(self.corpus, state.data_seed, state.data_cursor,
                                      self.batch_size, self.seq_len)
        ops = self.backend.ops
        loss = self.model.forward(state.params, tokens, targets)
        self.backend.fill_zero(self.grads)
        self.model.backward(self.grads)
        norm = ops.clip_grad_norm(self.grads, self.grad_clip)
        if not (np.isfinite(loss) and np.isfinite(norm)):
            raise NonFiniteStateError(
                f"step {state.step + 1}: loss {loss}, gradient norm {norm} is not finite")
        ops.adamw(state.params, self.grads, state.adam_m, state.adam_v, self.layout.segments,
              self.layout.decay_mask, state.step + 1, lr, self.beta1, self.beta2, self.eps,
              self.weight_decay)
        state.step += 1
        state.data_cursor += 1
        if state.step % self.checkpoint_every:
            return StepResult(state.step, float(loss), float(norm), None)
        return StepResult(state.step, float(loss), float(norm), self.state_hash(state),
                          gradient_digest(self.backend.to_host(self.grads)))

    def train(self, state: TrainingState, steps: int,
              on_step: Callable[[StepResult], None] | None = None) -> list[StepResult]:
        """Run steps training steps; returns each step's result."""
        results = []
        for _ in range(steps):
            result = self.step(state)
            results.append(result)
            if on_step is not None:
                on_step(result)
        return results

    def eval_loss(self, params: np.ndarray) -> float:
        """Mean loss over the genesis's fixed held-out batches (batch means averaged in order)."""
        n = self.genesis.eval.batches
        total = np.float32(0.0)
        for index in range(n):
            tokens, targets = eval_batch(self.corpus, index, n, self.batch_size, self.seq_len)
            total = np.float32(total + self.model.forward(params, tokens, targets))
        return float(total / np.float32(n))
