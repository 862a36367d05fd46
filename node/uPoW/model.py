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

from kernels.attention import attention_backward, attention_forward
from kernels.crossentropy import crossentropy_backward, crossentropy_forward, mean_loss
from kernels.encoder import encoder_backward, encoder_forward
from kernels.gelu import gelu_backward, gelu_forward
from kernels.layernorm import layernorm_backward, layernorm_forward
from kernels.linear import linear_backward, linear_forward
from kernels.matmul import matmul_acc
from kernels.residual import residual_forward
from kernels.rng import derive_key, fill_uniform
from node.genesis import ModelConfig

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
    ActivationTensors; call forward, then backward, then read the gradients.
    """

    def __init__(self, layout: ParameterLayout, batch_size: int, seq_len: int):
        cfg = layout.config
        if seq_len > cfg.context_length:
            raise ValueError(f"sequence length {seq_len} exceeds context {cfg.context_length}")
        self.layout = layout
        self.B, self.T = batch_size, seq_len
        B, T, C, L, V = batch_size, seq_len, cfg.n_embd, cfg.n_layer, cfg.vocab_size
        nh = cfg.n_head
        f32 = np.float32
        self.n_head = nh
        self.encoded = np.zeros((B, T, C), f32)
        self.ln1 = np.zeros((L, B * T, C), f32)
        self.ln1_mean = np.zeros((L, B * T), f32)
        self.ln1_rstd = np.zeros((L, B * T), f32)
        self.qkv = np.zeros((L, B, T, 3 * C), f32)
        self.atty = np.zeros((L, B, T, C), f32)
        self.att = np.zeros((L, B, nh, T, T), f32)
        self.attproj = np.zeros((L, B * T, C), f32)
        self.residual2 = np.zeros((L, B * T, C), f32)
        self.ln2 = np.zeros((L, B * T, C), f32)
        self.ln2_mean = np.zeros((L, B * T), f32)
        self.ln2_rstd = np.zeros((L, B * T), f32)
        self.fch = np.zeros((L, B * T, 4 * C), f32)
        self.fch_gelu = np.zeros((L, B * T, 4 * C), f32)
        self.fcproj = np.zeros((L, B * T, C), f32)
        self.residual3 = np.zeros((L, B * T, C), f32)
        self.lnf = np.zeros((B * T, C), f32)
        self.lnf_mean = np.zeros(B * T, f32)
        self.lnf_rstd = np.zeros(B * T, f32)
        self.logits = np.zeros((B * T, V), f32)
        self.probs = np.zeros((B * T, V), f32)
        self.losses = np.zeros(B * T, f32)
        self.tokens: np.ndarray | None = None
        self.targets: np.ndarray | None = None
        self.params: dict[str, np.ndarray] = {}

    def _residual_in(self, layer: int) -> np.ndarray:
        if layer == 0:
            return self.encoded.reshape(self.B * self.T, -1)
        return self.residual3[layer - 1]

    def forward(self, params: np.ndarray, tokens: np.ndarray, targets: np.ndarray) -> np.float32:
        """Mean cross-entropy of predicting targets (B,T) from tokens (B,T), int32."""
        p = self.layout.views(params)
        self.params, self.tokens, self.targets = p, tokens, targets.reshape(-1)
        B, T = self.B, self.T
        encoder_forward(self.encoded, tokens, p["wte.weight"], p["wpe.weight"])
        for l in range(self.layout.config.n_layer):
            h = f"h.{l}."
            residual = self._residual_in(l)
            layernorm_forward(self.ln1[l], self.ln1_mean[l], self.ln1_rstd[l], residual,
                              p[h + "ln_1.weight"], p[h + "ln_1.bias"])
            qkv = self.qkv[l].reshape(B * T, -1)
            linear_forward(qkv, self.ln1[l], p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"])
            attention_forward(self.atty[l], self.att[l], self.qkv[l], self.n_head)
            linear_forward(self.attproj[l], self.atty[l].reshape(B * T, -1),
                           p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"])
            residual_forward(self.residual2[l].reshape(-1), residual.reshape(-1),
                             self.attproj[l].reshape(-1))
            layernorm_forward(self.ln2[l], self.ln2_mean[l], self.ln2_rstd[l], self.residual2[l],
                              p[h + "ln_2.weight"], p[h + "ln_2.bias"])
            linear_forward(self.fch[l], self.ln2[l], p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"])
            gelu_forward(self.fch_gelu[l].reshape(-1), self.fch[l].reshape(-1))
            linear_forward(self.fcproj[l], self.fch_gelu[l],
                           p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])
            residual_forward(self.residual3[l].reshape(-1), self.residual2[l].reshape(-1),
                             self.fcproj[l].reshape(-1))
        last = self._residual_in(self.layout.config.n_layer)
        layernorm_forward(self.lnf, self.lnf_mean, self.lnf_rstd, last,
                          p["ln_f.weight"], p["ln_f.bias"])
        # the language-model head shares its weights with the token embedding
        self.logits[:] = np.float32(0.0)
        matmul_acc(self.lnf, np.ascontiguousarray(p["wte.weight"].T), self.logits)
        crossentropy_forward(self.losses, self.probs, self.logits, self.targets)
        return mean_loss(self.losses)

    def backward(self, grads: np.ndarray) -> None:
        """Gradients of the last forward's mean loss, written into the zeroed flat grads."""
        g = self.layout.views(grads)
        p = self.params
        B, T, C = self.B, self.T, self.layout.config.n_embd
        dlogits = np.empty_like(self.logits)
        crossentropy_backward(dlogits, self.probs, self.targets)
        dlnf = np.zeros((B * T, C), np.float32)
        matmul_acc(dlogits, p["wte.weight"], dlnf)
        matmul_acc(np.ascontiguousarray(dlogits.T), self.lnf, g["wte.weight"])
        dresidual = np.zeros((B * T, C), np.float32)
        last = self._residual_in(self.layout.config.n_layer)
        layernorm_backward(dresidual, g["ln_f.weight"], g["ln_f.bias"], dlnf, last,
                           p["ln_f.weight"], self.lnf_mean, self.lnf_rstd)
        for l in reversed(range(self.layout.config.n_layer)):
            h = f"h.{l}."
            residual = self._residual_in(l)
            # residual3 = residual2 + fcproj: the gradient passes to both unchanged
            dfcproj = dresidual
            dresidual2 = dresidual.copy()
            dfch_gelu = np.zeros((B * T, 4 * C), np.float32)
            linear_backward(dfch_gelu, g[h + "mlp.c_proj.weight"], g[h + "mlp.c_proj.bias"],
                            dfcproj, self.fch_gelu[l], p[h + "mlp.c_proj.weight"])
            dfch = np.zeros((B * T, 4 * C), np.float32)
            gelu_backward(dfch.reshape(-1), self.fch[l].reshape(-1), dfch_gelu.reshape(-1))
            dln2 = np.zeros((B * T, C), np.float32)
            linear_backward(dln2, g[h + "mlp.c_fc.weight"], g[h + "mlp.c_fc.bias"],
                            dfch, self.ln2[l], p[h + "mlp.c_fc.weight"])
            layernorm_backward(dresidual2, g[h + "ln_2.weight"], g[h + "ln_2.bias"], dln2,
                               self.residual2[l], p[h + "ln_2.weight"],
                               self.ln2_mean[l], self.ln2_rstd[l])
            # residual2 = residual + attproj
            dattproj = dresidual2
            dresidual_in = dresidual2.copy()
            datty = np.zeros((B * T, C), np.float32)
            linear_backward(datty, g[h + "attn.c_proj.weight"], g[h + "attn.c_proj.bias"],
                            dattproj, self.atty[l].reshape(B * T, -1), p[h + "attn.c_proj.weight"])
            dqkv = np.zeros((B, T, 3 * C), np.float32)
            attention_backward(dqkv, datty.reshape(B, T, C), self.qkv[l], self.att[l], self.n_head)
            dln1 = np.zeros((B * T, C), np.float32)
            linear_backward(dln1, g[h + "attn.c_attn.weight"], g[h + "attn.c_attn.bias"],
                            dqkv.reshape(B * T, -1), self.ln1[l], p[h + "attn.c_attn.weight"])
            layernorm_backward(dresidual_in, g[h + "ln_1.weight"], g[h + "ln_1.bias"], dln1,
                               residual, p[h + "ln_1.weight"], self.ln1_mean[l], self.ln1_rstd[l])
            dresidual = dresidual_in
        encoder_backward(g["wte.weight"], g["wpe.weight"], dresidual.reshape(B, T, C), self.tokens)
