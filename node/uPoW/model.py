"""The GPT-2 style byte-level decoder: parameter layout, initialization, forward and
backward, built from the deterministic kernels in the manner of llm.c.

All parameters live in one flat float32 buffer (and so do their gradients and the
optimizer moments); each tensor is a view at a fixed offset.  The order of the
tensors below is part of the protocol: it fixes the state hash and the export.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from kernels.backend import Backend, cpu_backend
from kernels.rng import derive_key, fill_uniform
from node.types.genesis import ModelConfig

INIT_STD = 0.02


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    offset: int
    decayed: bool  # AdamW weight decay applies to matrices, not to biases or norms

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _layer_tensors(layer: int, c: int) -> list[tuple[str, tuple[int, ...]]]:
    p = f"h.{layer}."
    return [
        (p + "ln_1.weight", (c,)), (p + "ln_1.bias", (c,)),
        (p + "attn.c_attn.weight", (c, 3 * c)), (p + "attn.c_attn.bias", (3 * c,)),
        (p + "attn.c_proj.weight", (c, c)), (p + "attn.c_proj.bias", (c,)),
        (p + "ln_2.weight", (c,)), (p + "ln_2.bias", (c,)),
        (p + "mlp.c_fc.weight", (c, 4 * c)), (p + "mlp.c_fc.bias", (4 * c,)),
        (p + "mlp.c_proj.weight", (4 * c, c)), (p + "mlp.c_proj.bias", (c,)),
    ]


class ParameterLayout:
    """Names, shapes and offsets of every tensor in a flat parameter buffer."""

    def __init__(self, config: ModelConfig):
        self.config = config
        v, t, c = config.vocab_size, config.context_length, config.n_embd
        named = [("wte.weight", (v, c)), ("wpe.weight", (t, c))]
        for layer in range(config.n_layer):
            named += _layer_tensors(layer, c)
        named += [("ln_f.weight", (c,)), ("ln_f.bias", (c,))]
        self.tensors: list[TensorSpec] = []
        offset = 0
        for name, shape in named:
            self.tensors.append(TensorSpec(name, shape, offset, decayed=len(shape) == 2))
            offset += math.prod(shape)
        self.size = offset
        self.by_name = {spec.name: spec for spec in self.tensors}
        self.segments = np.array([(s.offset, s.size) for s in self.tensors], dtype=np.int64)
        self.decay_mask = np.array([s.decayed for s in self.tensors], dtype=np.bool_)

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """name -> a view of that tensor inside flat."""
        return {s.name: flat[s.offset:s.offset + s.size].reshape(s.shape) for s in self.tensors}


def _init_bound(spec: TensorSpec, n_layer: int) -> np.float32:
    # GPT-2's init: std 0.02, residual projections scaled by 1/sqrt(2L); drawn
    # uniform with the same std (bound = std*sqrt(3)) since it needs no transcendental.
    std = np.float32(INIT_STD)
    if spec.name.endswith("c_proj.weight"):
        std = std / np.sqrt(np.float32(2 * n_layer))
    return np.float32(std * np.sqrt(np.float32(3.0)))


def init_parameters(layout: ParameterLayout) -> np.ndarray:
    """The genesis model: deterministic from the config's init seed."""
    params = np.zeros(layout.size, dtype=np.float32)
    seed = np.uint64(layout.config.init_seed)
    for index, spec in enumerate(layout.tensors):
        view = params[spec.offset:spec.offset + spec.size]
        if spec.decayed:
            key = np.uint64(derive_key(seed, np.uint64(index)))
            fill_uniform(view, key, _init_bound(spec, layout.config.n_layer))
        elif spec.name.endswith(".weight"):  # layernorm gains
            view[:] = np.float32(1.0)
    return params


class GPT:
    """Forward and backward of the decoder for a fixed batch shape (B, T).

    Activations are kept between forward and backward like llm.c's
    ActivationTensors, and the backward pass's scratch gradients like its
    grads_acts: all allocated once, so a step allocates nothing (on the GPU an
    allocation is a driver call).  Call forward, then backward, then read the
    gradients.
    """

    def __init__(self, layout: ParameterLayout, batch_size: int, seq_len: int,
                 backend: Backend | None = None):
        cfg = layout.config
        self.backend = backend if backend is not None else cpu_backend()
        self.ops = self.backend.ops
        zeros = self.backend.zeros
        if seq_len > cfg.context_length:
            raise ValueError(f"sequence length {seq_len} exceeds context {cfg.context_length}")
        self.layout = layout
        self.B, self.T = batch_size, seq_len
        B, T, C, L, V = batch_size, seq_len, cfg.n_embd, cfg.n_layer, cfg.vocab_size
        nh = cfg.n_head
        self.n_head = nh
        self.encoded = zeros((B, T, C))
        self.ln1 = zeros((L, B * T, C))
        self.ln1_mean = zeros((L, B * T))
        self.ln1_rstd = zeros((L, B * T))
        self.qkv = zeros((L, B, T, 3 * C))
        self.atty = zeros((L, B, T, C))
        self.att = zeros((L, B, nh, T, T))
        self.attproj = zeros((L, B * T, C))
        self.residual2 = zeros((L, B * T, C))
        self.ln2 = zeros((L, B * T, C))
        self.ln2_mean = zeros((L, B * T))
        self.ln2_rstd = zeros((L, B * T))
        self.fch = zeros((L, B * T, 4 * C))
        self.fch_gelu = zeros((L, B * T, 4 * C))
        self.fcproj = zeros((L, B * T, C))
        self.residual3 = zeros((L, B * T, C))
        self.lnf = zeros((B * T, C))
        self.lnf_mean = zeros(B * T)
        self.lnf_rstd = zeros(B * T)
        self.logits = zeros((B * T, V))
        self.probs = zeros((B * T, V))
        self.losses = zeros(B * T)
        self.wte_t = zeros((C, V))  # the head's weight, wte transposed
        # backward scratch; two residual-gradient buffers take turns through the layers
        self.dlogits = zeros((B * T, V))
        self.dlogits_t = zeros((V, B * T))
        self.dlnf = zeros((B * T, C))
        self.dresidual = zeros((B * T, C))
        self.dresidual_next = zeros((B * T, C))
        self.dfch_gelu = zeros((B * T, 4 * C))
        self.dfch = zeros((B * T, 4 * C))
        self.dln = zeros((B * T, C))
        self.datty = zeros((B * T, C))
        self.dqkv = zeros((B, T, 3 * C))
        self.tokens: np.ndarray | None = None
        self.targets: np.ndarray | None = None
        self.params: dict[str, np.ndarray] = {}

    def _residual_in(self, layer: int):
        if layer == 0:
            return self.encoded.reshape((self.B * self.T, self.layout.config.n_embd))
        return self.residual3[layer - 1]

    def forward(self, params, tokens: np.ndarray, targets: np.ndarray) -> np.float32:
        """Mean cross-entropy of predicting targets (B,T) from tokens (B,T), int32.
        params is the flat parameter buffer on this model's backend."""
        ops, to_device = self.ops, self.backend.to_device
        p = self.layout.views(params)
        B, T, C = self.B, self.T, self.layout.config.n_embd
        BT = B * T
        self.params = p
        self.tokens = to_device(tokens)
        self.targets = to_device(np.ascontiguousarray(targets.reshape(BT)))
        ops.encoder_forward(self.encoded, self.tokens, p["wte.weight"], p["wpe.weight"])
        for l in range(self.layout.config.n_layer):
            h = f"h.{l}."
            residual = self._residual_in(l)
            ops.layernorm_forward(self.ln1[l], self.ln1_mean[l], self.ln1_rstd[l], residual,
                                  p[h + "ln_1.weight"], p[h + "ln_1.bias"])
            ops.linear_forward(self.qkv[l].reshape((BT, 3 * C)), self.ln1[l],
                               p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"])
            ops.attention_forward(self.atty[l], self.att[l], self.qkv[l], self.n_head)
            ops.linear_forward(self.attproj[l], self.atty[l].reshape((BT, C)),
                               p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"])
            ops.residual_forward(_flat(self.residual2[l]), _flat(residual), _flat(self.attproj[l]))
            ops.layernorm_forward(self.ln2[l], self.ln2_mean[l], self.ln2_rstd[l], self.residual2[l],
                                  p[h + "ln_2.weight"], p[h + "ln_2.bias"])
            ops.linear_forward(self.fch[l], self.ln2[l], p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"])
            ops.gelu_forward(_flat(self.fch_gelu[l]), _flat(self.fch[l]))
            ops.linear_forward(self.fcproj[l], self.fch_gelu[l],
                               p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])
            ops.residual_forward(_flat(self.residual3[l]), _flat(self.residual2[l]),
                                 _flat(self.fcproj[l]))
        last = self._residual_in(self.layout.config.n_layer)
        ops.layernorm_forward(self.lnf, self.lnf_mean, self.lnf_rstd, last,
                              p["ln_f.weight"], p["ln_f.bias"])
        # the language-model head shares its weights with the token embedding
        self.backend.fill_zero(self.logits)
        self.backend.transpose_into(self.wte_t, p["wte.weight"])
        ops.matmul_acc(self.lnf, self.wte_t, self.logits)
        ops.crossentropy_forward(self.losses, self.probs, self.logits, self.targets)
        return ops.mean_loss(self.losses)

    def backward(self, grads) -> None:
        """Gradients of the last forward's mean loss, written into the zeroed flat grads."""
        ops, backend = self.ops, self.backend

        def zeroed(buffer):
            backend.fill_zero(buffer)
            return buffer

        g = self.layout.views(grads)
        p = self.params
        B, T, C = self.B, self.T, self.layout.config.n_embd
        BT = B * T
        dlogits = zeroed(self.dlogits)
        ops.crossentropy_backward(dlogits, self.probs, self.targets)
        dlnf = zeroed(self.dlnf)
        ops.matmul_acc(dlogits, p["wte.weight"], dlnf)
        backend.transpose_into(self.dlogits_t, dlogits)
        ops.matmul_acc(self.dlogits_t, self.lnf, g["wte.weight"])
        dresidual, spare = zeroed(self.dresidual), self.dresidual_next
        last = self._residual_in(self.layout.config.n_layer)
        ops.layernorm_backward(dresidual, g["ln_f.weight"], g["ln_f.bias"], dlnf, last,
                               p["ln_f.weight"], self.lnf_mean, self.lnf_rstd)
        for l in reversed(range(self.layout.config.n_layer)):
            h = f"h.{l}."
            residual = self._residual_in(l)
            # residual3 = residual2 + fcproj: the gradient passes to both unchanged
            dfcproj = dresidual
            dresidual2 = spare
            backend.copy_into(dresidual2, dresidual)
            dfch_gelu = zeroed(self.dfch_gelu)
            ops.linear_backward(dfch_gelu, g[h + "mlp.c_proj.weight"], g[h + "mlp.c_proj.bias"],
                                dfcproj, self.fch_gelu[l], p[h + "mlp.c_proj.weight"])
            dfch = zeroed(self.dfch)
            ops.gelu_backward(_flat(dfch), _flat(self.fch[l]), _flat(dfch_gelu))
            dln2 = zeroed(self.dln)
            ops.linear_backward(dln2, g[h + "mlp.c_fc.weight"], g[h + "mlp.c_fc.bias"],
                                dfch, self.ln2[l], p[h + "mlp.c_fc.weight"])
            ops.layernorm_backward(dresidual2, g[h + "ln_2.weight"], g[h + "ln_2.bias"], dln2,
                                   self.residual2[l], p[h + "ln_2.weight"],
                                   self.ln2_mean[l], self.ln2_rstd[l])
            # residual2 = residual + attproj; dfcproj's buffer is free again
            dattproj = dresidual2
            dresidual_in = dfcproj
            backend.copy_into(dresidual_in, dresidual2)
            datty = zeroed(self.datty)
            ops.linear_backward(datty, g[h + "attn.c_proj.weight"], g[h + "attn.c_proj.bias"],
                                dattproj, self.atty[l].reshape((BT, C)), p[h + "attn.c_proj.weight"])
            dqkv = zeroed(self.dqkv)
            ops.attention_backward(dqkv, datty.reshape((B, T, C)), self.qkv[l], self.att[l],
                                   self.n_head)
            dln1 = zeroed(self.dln)
            ops.linear_backward(dln1, g[h + "attn.c_attn.weight"], g[h + "attn.c_attn.bias"],
                                dqkv.reshape((BT, 3 * C)), self.ln1[l], p[h + "attn.c_attn.weight"])
            ops.layernorm_backward(dresidual_in, g[h + "ln_1.weight"], g[h + "ln_1.bias"], dln1,
                                   residual, p[h + "ln_1.weight"], self.ln1_mean[l], self.ln1_rstd[l])
            dresidual, spare = dresidual_in, dresidual2
        ops.encoder_backward(g["wte.weight"], g["wpe.weight"], dresidual.reshape((B, T, C)),
                             self.tokens)


def _flat(x):
    return x.reshape(x.size)
