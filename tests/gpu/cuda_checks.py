"""Op-by-op bit identity of the CUDA kernels (kernels/cuda) against the CPU kernels.

Shared by the simulator test (tests/unit/test_cuda_sim.py runs this module in a
subprocess with NUMBA_ENABLE_CUDASIM=1, small shapes) and the GPU test (in process, the
devnet shapes).  ``run_checks`` returns, per checked output, the number of elements
whose float32 bits differ.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import warnings

import numpy as np
from numba import cuda

import kernels.cuda as gk
from kernels import attention, crossentropy, encoder, gelu, layernorm, linear, matmul, optim
from kernels import residual, rng
from kernels.cuda import matmul as gmatmul
from kernels.cuda.fp import THREADS, blocks
from kernels.cuda.mathfn import exp_f32, log_f32, tanh_f32


@dataclasses.dataclass(frozen=True)
class Shapes:
    B: int
    T: int
    C: int
    n_head: int
    V: int
    norm_size: int  # sum_of_squares / clip length: more than one 8192 chunk
    n_params: int  # optimizer buffer length


SMALL = Shapes(B=2, T=8, C=16, n_head=4, V=32, norm_size=8192 + 300, n_params=600)


@cuda.jit
def _math_map(out_exp, out_log, out_tanh, x):
    i = cuda.grid(1)
    if i < x.size:
        out_exp[i] = exp_f32(x[i])
        out_log[i] = log_f32(x[i])
        out_tanh[i] = tanh_f32(x[i])


def _mismatches(cpu: np.ndarray, dev) -> int:
    """Elements whose float32 bits differ, a NaN against a NaN excepted: a NaN the
    hardware makes (the matmul check's -0.0 * inf) has the default bits of its maker,
    0xFFC00000 on x86 and 0x7FFFFFFF on NVIDIA GPUs (one element in each tiled check
    on an H200, 2026-12-04). No NaN is ever hashed: a non-finite state fails its unit
    (DESIGN.md §3)."""
    got = dev.copy_to_host() if hasattr(dev, "copy_to_host") else np.asarray(dev)
    cpu = np.asarray(cpu, np.float32)
    got = np.asarray(got, np.float32)
    if cpu.shape != got.shape:
        return max(cpu.size, got.size, 1)
    differ = cpu.view(np.uint32) != got.view(np.uint32)
    return int(np.count_nonzero(differ & ~(np.isnan(cpu) & np.isnan(got))))


def _special_values(rng_: np.random.Generator) -> np.ndarray:
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 1e-40, 1.17e-38, 1.0, -1.0,
                         88.72283, 88.7229, -103.97, -104.0, 200.0, -200.0, 9.0109, 9.02,
                         2.0 ** -12, -(2.0 ** -13), 0.5, 0.9999, 3.4e38], np.float32)
    return np.concatenate([specials, rng_.standard_normal(64).astype(np.float32) * 8,
                           np.abs(rng_.standard_normal(32)).astype(np.float32) * 1e3])


def run_checks(s: Shapes, seed: int = 0) -> dict[str, int]:
    r = np.random.default_rng(seed)
    B, T, C, NH, V = s.B, s.T, s.C, s.n_head, s.V
    N = B * T

    def randn(*shape, scale=1.0):
        return (r.standard_normal(shape) * scale).astype(np.float32)

    def dev(x):
        return cuda.to_device(np.ascontiguousarray(x))

    res: dict[str, int] = {}

    x = _special_values(r)
    outs = [cuda.device_array(x.size, np.float32) for _ in range(3)]
    _math_map[blocks(x.size), THREADS](outs[0], outs[1], outs[2], dev(x))
    from tests.kernel_oracles import exp_array, log_array, tanh_array
    res["exp_f32"] = _mismatches(exp_array(x), outs[0])
    res["log_f32"] = _mismatches(log_array(x), outs[1])
    res["tanh_f32"] = _mismatches(tanh_array(x), outs[2])

    a, b, c0 = randn(N, C), randn(C, 3 * C), randn(N, 3 * C)
    cpu = c0.copy()
    matmul.matmul_acc(a, b, cpu)
    d = dev(c0)
    gk.matmul_acc(dev(a), dev(b), d)
    res["matmul_acc"] = _mismatches(cpu, d)

    # Every thread tile with every operand layout, on a product that covers no tile
    # exactly and whose k runs over a partial last slab.  C[0, 0] is -0.0 + (-0.0 * b)
    # for positive b all along its chain: a kernel padding k with zeros makes it +0.0.
    M, K, Nc = N + 5, C + 5, 3 * C - 3
    ma, mb, mc = randn(M, K), randn(K, Nc), randn(M, Nc)
    ma[0], mc[0], mb[:, 0], mb[3, 2] = -0.0, -0.0, np.abs(mb[:, 0]), np.inf
    cpu = mc.copy()
    matmul.matmul_acc(ma, mb, cpu)
    for t in gmatmul.TILED:
        for ta, tb in ((False, False), (True, False), (False, True), (True, True)):
            d = dev(mc)
            gmatmul.launch_tiled(t, dev(ma.T if ta else ma), dev(mb.T if tb else mb), d, ta, tb)
            res[f"matmul_tiled.{t}x{t}.{'t' if ta else 'n'}{'t' if tb else 'n'}"] = \
                _mismatches(cpu, d)

    w, bias = randn(C, 3 * C, scale=0.1), randn(3 * C)
    cpu = np.zeros((N, 3 * C), np.float32)
    linear.linear_forward(cpu, a, w, bias)
    d = dev(np.zeros((N, 3 * C), np.float32))
    gk.linear_forward(d, dev(a), dev(w), dev(bias))
    res["linear_forward"] = _mismatches(cpu, d)

    dout = randn(N, 3 * C)
    grads = [randn(N, C), randn(C, 3 * C), randn(3 * C)]
    cpu = [g.copy() for g in grads]
    linear.linear_backward(*cpu, dout, a, w)
    dg = [dev(g) for g in grads]
    gk.linear_backward(*dg, dev(dout), dev(a), dev(w))
    for name, cg, gg in zip(("dinp", "dweight", "dbias"), cpu, dg):
        res[f"linear_backward.{name}"] = _mismatches(cg, gg)
    cpu = grads[2].copy()
    linear.bias_backward(cpu, dout)
    d = dev(grads[2])
    gk.bias_backward(d, dev(dout))
    res["bias_backward"] = _mismatches(cpu, d)

    tokens = r.integers(0, min(V, 5), (B, T)).astype(np.int32)  # repeats on purpose
    wte, wpe = randn(V, C), randn(T, C)
    cpu = np.zeros((B, T, C), np.float32)
    encoder.encoder_forward(cpu, tokens, wte, wpe)
    d = dev(np.zeros((B, T, C), np.float32))
    gk.encoder_forward(d, dev(tokens), dev(wte), dev(wpe))
    res["encoder_forward"] = _mismatches(cpu, d)
    dout = randn(B, T, C)
    dwte, dwpe = randn(V, C), randn(T, C)
    cpu = [dwte.copy(), dwpe.copy()]
    encoder.encoder_backward(*cpu, dout, tokens)
    dg = [dev(dwte), dev(dwpe)]
    gk.encoder_backward(*dg, dev(dout), dev(tokens))
    res["encoder_backward.dwte"] = _mismatches(cpu[0], dg[0])
    res["encoder_backward.dwpe"] = _mismatches(cpu[1], dg[1])

    inp = randn(N, C, scale=3.0) + np.float32(0.5)
    lw, lb = randn(C), randn(C)
    cpu = [np.zeros((N, C), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32)]
    layernorm.layernorm_forward(*cpu, inp, lw, lb)
    dg = [dev(np.zeros_like(z)) for z in cpu]
    gk.layernorm_forward(*dg, dev(inp), dev(lw), dev(lb))
    for name, cg, gg in zip(("out", "mean", "rstd"), cpu, dg):
        res[f"layernorm_forward.{name}"] = _mismatches(cg, gg)
    mean, rstd = cpu[1], cpu[2]
    dout = randn(N, C)
    grads = [randn(N, C), randn(C), randn(C)]
    cpu = [g.copy() for g in grads]
    layernorm.layernorm_backward(*cpu, dout, inp, lw, mean, rstd)
    dg = [dev(g) for g in grads]
    gk.layernorm_backward(*dg, dev(dout), dev(inp), dev(lw), dev(mean), dev(rstd))
    for name, cg, gg in zip(("dinp", "dweight", "dbias"), cpu, dg):
        res[f"layernorm_backward.{name}"] = _mismatches(cg, gg)

    qkv = randn(B, T, 3 * C)
    cpu_out = np.zeros((B, T, C), np.float32)
    cpu_att = np.full((B, NH, T, T), np.float32(7.0))  # the kernels must zero the upper part
    attention.attention_forward(cpu_out, cpu_att, qkv, NH)
    d_out = dev(np.zeros((B, T, C), np.float32))
    d_att = dev(np.full((B, NH, T, T), np.float32(7.0)))
    gk.attention_forward(d_out, d_att, dev(qkv), NH)
    res["attention_forward.out"] = _mismatches(cpu_out, d_out)
    res["attention_forward.att"] = _mismatches(cpu_att, d_att)
    dout = randn(B, T, C)
    dqkv = randn(B, T, 3 * C)
    cpu = dqkv.copy()
    attention.attention_backward(cpu, dout, qkv, cpu_att, NH)
    d = dev(dqkv)
    gk.attention_backward(d, dev(dout), dev(qkv), dev(cpu_att), NH)
    res["attention_backward"] = _mismatches(cpu, d)

    x = np.concatenate([randn(N * 4 * C, scale=2.0), _special_values(r)[:20]])
    x = x[np.isfinite(x)]
    cpu = np.zeros_like(x)
    gelu.gelu_forward(cpu, x)
    d = dev(np.zeros_like(x))
    gk.gelu_forward(d, dev(x))
    res["gelu_forward"] = _mismatches(cpu, d)
    dout, dinp = randn(x.size), randn(x.size)
    cpu = dinp.copy()
    gelu.gelu_backward(cpu, x, dout)
    d = dev(dinp)
    gk.gelu_backward(d, dev(x), dev(dout))
    res["gelu_backward"] = _mismatches(cpu, d)

    ra, rb = randn(N * C), randn(N * C)
    cpu = np.zeros(N * C, np.float32)
    residual.residual_forward(cpu, ra, rb)
    d = dev(np.zeros(N * C, np.float32))
    gk.residual_forward(d, dev(ra), dev(rb))
    res["residual_forward"] = _mismatches(cpu, d)

    logits = randn(N, V, scale=4.0)
    targets = r.integers(0, V, N).astype(np.int32)
    cpu_l, cpu_p = np.zeros(N, np.float32), np.zeros((N, V), np.float32)
    crossentropy.crossentropy_forward(cpu_l, cpu_p, logits, targets)
    d_l, d_p = dev(np.zeros(N, np.float32)), dev(np.zeros((N, V), np.float32))
    gk.crossentropy_forward(d_l, d_p, dev(logits), dev(targets))
    res["crossentropy_forward.losses"] = _mismatches(cpu_l, d_l)
    res["crossentropy_forward.probs"] = _mismatches(cpu_p, d_p)
    res["mean_loss"] = _mismatches(np.float32(crossentropy.mean_loss(cpu_l)),
                                   gk.mean_loss(dev(cpu_l)))
    cpu = np.zeros((N, V), np.float32)
    crossentropy.crossentropy_backward(cpu, cpu_p, targets)
    d = dev(np.zeros((N, V), np.float32))
    gk.crossentropy_backward(d, dev(cpu_p), dev(targets))
    res["crossentropy_backward"] = _mismatches(cpu, d)

    g = randn(s.norm_size, scale=0.01)
    res["sum_of_squares"] = _mismatches(np.float32(optim.sum_of_squares(g)),
                                        gk.sum_of_squares(dev(g)))
    for name, max_norm in (("clip_grad_norm.clipped", np.float32(0.1)),
                           ("clip_grad_norm.unclipped", np.float32(1e6))):
        cpu = g.copy()
        cpu_norm = np.float32(optim.clip_grad_norm(cpu, max_norm))
        d = dev(g)
        dev_norm = gk.clip_grad_norm(d, max_norm)
        res[name] = _mismatches(cpu, d) + _mismatches(cpu_norm, dev_norm)

    P = s.n_params
    sizes = [P // 3, 1, P // 5, P - P // 3 - 1 - P // 5]
    segments = np.array([(sum(sizes[:i]), n) for i, n in enumerate(sizes)], np.int64)
    decay = np.array([True, False, True, False])
    state = [randn(P, scale=0.02), randn(P, scale=0.01), randn(P, scale=0.001),
             np.abs(randn(P, scale=1e-5))]
    hp = (np.float32(6e-4), np.float32(0.9), np.float32(0.95), np.float32(1e-8), np.float32(0.1))
    cpu = [t.copy() for t in state]
    dg = [dev(t) for t in state]
    for step in (1, 2, 7):
        optim.adamw(*cpu, segments, decay, step, *hp)
        gk.adamw(*dg, segments, decay, step, *hp)
    for name, cg, gg in zip(("params", "grads", "m", "v"), cpu, dg):
        res[f"adamw.{name}"] = _mismatches(cg, gg)
    # segments out of order, with gaps and an empty one: elements outside stay as they are
    gapped = np.array([(P - 50, 50), (0, 100), (200, 0), (150, 30)], np.int64)
    gapped_decay = np.array([True, False, True, True])
    cpu = [t.copy() for t in state]
    dg = [dev(t) for t in state]
    optim.adamw(*cpu, gapped, gapped_decay, 3, *hp)
    gk.adamw(*dg, gapped, gapped_decay, 3, *hp)
    res["adamw.gapped"] = sum(_mismatches(cg, gg) for cg, gg in zip(cpu, dg))

    deltas = randn(3, P, scale=0.01)
    cpu = np.zeros(P, np.float32)
    optim.mean_of_deltas(cpu, deltas)
    d = dev(np.zeros(P, np.float32))
    gk.mean_of_deltas(d, dev(deltas))
    res["mean_of_deltas"] = _mismatches(cpu, d)
    weights, momentum = randn(P), randn(P, scale=0.01)
    cpu = [weights.copy(), momentum.copy()]
    optim.outer_nesterov(*cpu, deltas[0], np.float32(0.7), np.float32(0.9))
    dg = [dev(weights), dev(momentum)]
    gk.outer_nesterov(*dg, dev(deltas[0]), np.float32(0.7), np.float32(0.9))
    res["outer_nesterov.weights"] = _mismatches(cpu[0], dg[0])
    res["outer_nesterov.momentum"] = _mismatches(cpu[1], dg[1])

    key, bound = np.uint64(0x1234_5678_9ABC_DEF0), np.float32(0.0346)
    cpu = np.zeros(P, np.float32)
    rng.fill_uniform(cpu, key, bound)
    d = dev(np.zeros(P, np.float32))
    gk.fill_uniform(d, key, bound)
    res["fill_uniform"] = _mismatches(cpu, d)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # The simulated generator's uint64 products wrap by design (numpy warns, per thread).
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
    print(json.dumps(run_checks(SMALL, args.seed)))


if __name__ == "__main__":
    main()
