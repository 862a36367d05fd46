"""`uponode bench kernels`: the deterministic kernels against torch, in one process.

Both sides run at the same thread count (numba's and torch's pools set alike) on
the same shapes, each timed as the best of several repeats after a warm-up, so
the ratios compare like with like on whatever machine runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Callable

import numpy as np

from node.genesis import Genesis, load_genesis

REPEATS = 25
STEP_REPEATS = 8


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def model_matmul_shapes(genesis: Genesis) -> list[tuple[str, int, int, int]]:
    """(use, M, K, N) of every matmul in one training step: each layer's forward
    x W, and its backward dx = dy W^T and dW = x^T dy."""
    m = genesis.training.batch_size * genesis.model.context_length
    c, v = genesis.model.n_embd, genesis.model.vocab_size
    layers = [("attn.c_attn", c, 3 * c), ("attn.c_proj", c, c), ("mlp.c_fc", c, 4 * c),
              ("mlp.c_proj", 4 * c, c), ("lm_head", c, v)]
    shapes = []
    for name, fan_in, fan_out in layers:
        shapes += [(f"{name}.forward", m, fan_in, fan_out),
                   (f"{name}.grad_input", m, fan_out, fan_in),
                   (f"{name}.grad_weight", fan_in, m, fan_out)]
    return shapes


def bench_matmul(genesis: Genesis, threads: int) -> list[dict]:
    import torch

    from kernels.matmul import matmul_acc

    rng = np.random.default_rng(0)
    records = []
    for use, m, k, n in model_matmul_shapes(genesis):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.zeros((m, n), np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ours = _best_seconds(lambda: matmul_acc(a, b, c), REPEATS)
        theirs = _best_seconds(lambda: torch.mm(ta, tb), REPEATS)
        flops = 2.0 * m * k * n
        records.append({"bench": "matmul", "use": use, "threads": threads, "shape": [m, k, n],
                        "deterministic_gflops": round(flops / ours / 1e9, 2),
                        "torch_gflops": round(flops / theirs / 1e9, 2),
                        "throughput_ratio": round(theirs / ours, 3)})
    return records


def _torch_train_step(genesis: Genesis, params: np.ndarray, tokens: np.ndarray,
                      targets: np.ndarray) -> Callable[[], None]:
    """One eager fp32 training step of the same model with torch's AdamW and clipping."""
    import torch

    from node.uPoW.model import ParameterLayout
    from node.uPoW.torch_gpt import torch_gpt_loss

    layout = ParameterLayout(genesis.model)
    tensors = {name: torch.tensor(view, requires_grad=True)
               for name, view in layout.views(params.copy()).items()}
    tc = genesis.training
    groups = [{"params": [tensors[s.name] for s in layout.tensors if s.decayed],
               "weight_decay": tc.weight_decay},
              {"params": [tensors[s.name] for s in layout.tensors if not s.decayed],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2),
                                  eps=tc.adam_eps)
    t_tokens, t_targets = torch.from_numpy(tokens).long(), torch.from_numpy(targets).long()

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        loss = torch_gpt_loss(tensors, t_tokens, t_targets, genesis.model.n_layer, genesis.model.n_head)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(tensors.values()), tc.grad_clip)
        optimizer.step()

    return step


def bench_train_step(genesis: Genesis, threads: int) -> dict:
    from node.uPoW.data import train_batch
    from node.uPoW.trainer import Trainer

    trainer = Trainer(genesis)
    state = trainer.initial_state()
    tokens, targets = train_batch(trainer.corpus, state.data_seed, 0, trainer.batch_size,
                                  trainer.seq_len)
    torch_step = _torch_train_step(genesis, state.params, tokens, targets)
    ours = _best_seconds(lambda: trainer.step(state), STEP_REPEATS)
    theirs = _best_seconds(torch_step, STEP_REPEATS)
    return {"bench": "train_step", "threads": threads, "params": trainer.layout.size,
            "tokens": trainer.tokens_per_step, "deterministic_ms": round(ours * 1e3, 2),
            "torch_eager_ms": round(theirs * 1e3, 2), "time_ratio": round(ours / theirs, 3)}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def run_bench(args: argparse.Namespace) -> int:
    import numba
    import torch

    genesis = load_genesis(args.genesis)
    thread_counts = args.threads or sorted({1, numba.config.NUMBA_NUM_THREADS})
    header = {"bench": "machine", "cpu": _cpu_name(),
              "cores": os.cpu_count(), "torch": torch.__version__, "numba": numba.__version__,
              "model": genesis.chain_id}
    records = [header]
    for threads in thread_counts:
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
        records += bench_matmul(genesis, threads)
        records.append(bench_train_step(genesis, threads))
    for record in records:
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print("  ".join(f"{k}={v}" for k, v in record.items()), file=sys.stdout)
    return 0
