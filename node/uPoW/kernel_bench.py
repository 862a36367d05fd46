"""`uponode bench kernels`: the deterministic kernels against torch, in one process.

Both sides run at the same thread count (numba's and torch's pools set alike) on
the same shapes, each timed as the best of several repeats after a warm-up, the two
taking turns, so the ratios compare like with like on whatever machine runs it.

With --gpu the CUDA kernels run against torch on the same GPU instead: the
matmuls against cuBLAS FP32 with TF32 off (a fair fp32 baseline; TF32 rounds the
inputs to 10-bit mantissas), and full training steps against torch eager fp32.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from node.uPoW.backends import Backend, backend_for
from node.types.errors import CommandError
from node.types.genesis import Genesis

if TYPE_CHECKING:
    from node.uPoW.trainer import Trainer

REPEATS = 25
STEP_REPEATS = 8


def _best_seconds(ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
                  our_sync: Callable[[], object] | None = None,
                  their_sync: Callable[[], object] | None = None) -> tuple[float, float]:
    """Best wall times of ours and of theirs over repeats, after one warm-up call of each
    (compiles, caches), the two taking turns so that a noisy moment of the machine
    falls on both.  A sync, where given, waits inside each timing for the device work
    its function queued."""
    timed = [(ours, our_sync or (lambda: None)), (theirs, their_sync or (lambda: None))]
    for fn, wait in timed:
        fn()
        wait()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for side, (fn, wait) in enumerate(timed):
            started = time.perf_counter()
            fn()
            wait()
            best[side] = min(best[side], time.perf_counter() - started)
    return best[0], best[1]


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
        ours, theirs = _best_seconds(lambda: matmul_acc(a, b, c), lambda: torch.mm(ta, tb), REPEATS)
        flops = 2.0 * m * k * n
        records.append({"bench": "matmul", "use": use, "threads": threads, "shape": [m, k, n],
                        "deterministic_gflops": round(flops / ours / 1e9, 2),
                        "torch_gflops": round(flops / theirs / 1e9, 2),
                        "throughput_ratio": round(theirs / ours, 3)})
    return records


def _torch_train_step(genesis: Genesis, params: np.ndarray, tokens: np.ndarray,
                      targets: np.ndarray, device: str = "cpu") -> Callable[[], None]:
    """One eager fp32 training step of the same model with torch's AdamW and clipping,
    on torch's device."""
    import torch

    from node.uPoW.model import ParameterLayout
    from node.uPoW.torch_gpt import torch_gpt_loss

    layout = ParameterLayout(genesis.model)
    tensors = {name: torch.tensor(view, device=device, requires_grad=True)
               for name, view in layout.views(params.copy()).items()}
    tc = genesis.training
    groups = [{"params": [tensors[s.name] for s in layout.tensors if s.decayed],
               "weight_decay": tc.weight_decay},
              {"params": [tensors[s.name] for s in layout.tensors if not s.decayed],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2),
                                  eps=tc.adam_eps)
    t_tokens = torch.from_numpy(tokens).long().to(device)
    t_targets = torch.from_numpy(targets).long().to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        loss = torch_gpt_loss(tensors, t_tokens, t_targets, genesis.model.n_layer, genesis.model.n_head)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(tensors.values()), tc.grad_clip)
        optimizer.step()

    return step


def _train_step_seconds(genesis: Genesis, backend: Backend | None = None, device: str = "cpu",
                        sync: Callable[[], object] | None = None,
                        torch_sync: Callable[[], object] | None = None,
                        ) -> tuple[Trainer, float, float]:
    """The trainer, and the best seconds of one of its steps on backend (the CPU by
    default) and of one torch eager step on device, from the same start and batch."""
    from node.uPoW.data import train_batch
    from node.uPoW.trainer import Trainer

    trainer = Trainer(genesis, backend=backend)
    state = trainer.initial_state()
    tokens, targets = train_batch(trainer.corpus, state.data_seed, 0, trainer.batch_size,
                                  trainer.seq_len)
    torch_step = _torch_train_step(genesis, trainer.host_state(state).params, tokens, targets,
                                   device)
    ours, theirs = _best_seconds(lambda: trainer.step(state), torch_step, STEP_REPEATS, sync, torch_sync)
    return trainer, ours, theirs


def _without_checkpoints(genesis: Genesis) -> Genesis:
    """genesis with no checkpoint, so no state hash, in the steps a benchmark times."""
    return dataclasses.replace(genesis, training=dataclasses.replace(
        genesis.training, checkpoint_every=STEP_REPEATS + 2))


def bench_train_step(genesis: Genesis, threads: int) -> list[dict]:
    """A step as the genesis's miner takes it (with its state hash where it checkpoints
    every step, as the devnet does), and the same step without the hash: what the
    kernels cost beside what the protocol asks on top."""
    records = []
    for hashed, config in ((True, genesis), (False, _without_checkpoints(genesis))):
        trainer, ours, theirs = _train_step_seconds(config)
        records.append({"bench": "train_step", "threads": threads,
                        "state_hash": hashed and genesis.training.checkpoint_every == 1,
                        "params": trainer.layout.size, "tokens": trainer.tokens_per_step,
                        "deterministic_ms": round(ours * 1e3, 2), "torch_eager_ms": round(theirs * 1e3, 2),
                        "time_ratio": round(ours / theirs, 3)})
    return records


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def gpu_backend() -> Backend:
    """The CUDA backend, or a CommandError where the kernels or torch's cuBLAS
    baseline cannot run here.  The kernels are checked first, so that a machine
    without a GPU gets the message `uponode train --gpu` gives."""
    backend = backend_for(gpu=True)
    import torch

    if torch.version.cuda is None:
        raise CommandError(f"--gpu: the installed torch {torch.__version__} is a build without "
                           "CUDA support, so the cuBLAS baseline cannot run")
    if not torch.cuda.is_available():
        raise CommandError(f"--gpu: torch {torch.__version__} (CUDA {torch.version.cuda}) cannot "
                           "use the GPU (torch.cuda.is_available() is false), so the cuBLAS "
                           "baseline cannot run")
    return backend


# About 11M parameters: big enough that a GPU step's time is the kernels' rather than
# their launches'.  tests/gpu/train_check.py checks the same model's bits.
TEN_MILLION_MODEL = {"n_layer": 8, "n_embd": 336, "n_head": 6, "context_length": 64}


def _ten_million(genesis: Genesis) -> Genesis:
    return dataclasses.replace(genesis, model=dataclasses.replace(genesis.model,
                                                                  **TEN_MILLION_MODEL))


def _gpu_header(genesis: Genesis) -> dict:
    import numba
    import numba_cuda
    import torch
    from numba import cuda
    from numba.cuda.cudadrv.driver import driver

    device = cuda.get_current_device()
    return {"bench": "machine", "device": "cuda", "gpu": device.name,
            "compute_capability": "{}.{}".format(*device.compute_capability),
            "driver": "{}.{}".format(*driver.get_version()),
            "cuda_runtime": "{}.{}".format(*cuda.runtime.get_version()),
            "torch_cuda": torch.version.cuda, "torch": torch.__version__,
            "numba": numba.__version__, "numba_cuda": numba_cuda.__version__,
            "model": genesis.chain_id,
            "tf32": torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def bench_matmul_gpu(genesis: Genesis) -> list[dict]:
    import torch
    from numba import cuda

    from kernels.cuda import matmul_acc

    rng = np.random.default_rng(0)
    records = []
    for use, m, k, n in model_matmul_shapes(genesis):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        da, db = cuda.to_device(a), cuda.to_device(b)
        dc = cuda.to_device(np.zeros((m, n), np.float32))
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        ours, theirs = _best_seconds(lambda: matmul_acc(da, db, dc), lambda: torch.mm(ta, tb), REPEATS,
                                     cuda.synchronize, torch.cuda.synchronize)
        flops = 2.0 * m * k * n
        records.append({"bench": "matmul", "device": "cuda", "use": use, "shape": [m, k, n],
                        "deterministic_gflops": round(flops / ours / 1e9, 2),
                        "cublas_gflops": round(flops / theirs / 1e9, 2),
                        "throughput_ratio": round(theirs / ours, 3)})
    return records


def bench_train_step_gpu(genesis: Genesis, config: str, backend: Backend) -> dict:
    """A step without the state hash: a miner hashes on the host, whatever the backend,
    and at the 10m model moving 132 MB of state off the GPU would swamp the kernels."""
    import torch
    from numba import cuda

    trainer, ours, theirs = _train_step_seconds(_without_checkpoints(genesis), backend, "cuda",
                                                cuda.synchronize, torch.cuda.synchronize)
    return {"bench": "train_step", "device": "cuda", "config": config, "state_hash": False,
            "params": trainer.layout.size, "tokens": trainer.tokens_per_step,
            "deterministic_ms": round(ours * 1e3, 2), "torch_eager_ms": round(theirs * 1e3, 2),
            "time_ratio": round(ours / theirs, 3)}


def gpu_records(genesis: Genesis, progress: Callable[[str], None]) -> list[dict]:
    """The GPU benchmark's records, header first; progress(message) says what runs next."""
    backend = gpu_backend()
    import torch

    # cuBLAS FP32 proper: TF32 would round the baseline's inputs to 10-bit mantissas
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    records = [_gpu_header(genesis)]
    progress(f"matmul at {len(model_matmul_shapes(genesis))} shapes, "
             f"deterministic vs cuBLAS FP32 on {records[0]['gpu']}")
    records += bench_matmul_gpu(genesis)
    for config, config_genesis in (("genesis", genesis), ("10m", _ten_million(genesis))):
        progress(f"training step ({config} model), deterministic vs torch eager FP32")
        records.append(bench_train_step_gpu(config_genesis, config, backend))
    return records


def cpu_records(genesis: Genesis, thread_counts: list[int] | None) -> list[dict]:
    """The CPU benchmark's records, header first, at each thread count (by default 1
    and numba's whole pool)."""
    import numba
    import torch

    thread_counts = thread_counts or sorted({1, numba.config.NUMBA_NUM_THREADS})
    header = {"bench": "machine", "cpu": _cpu_name(),
              "cores": os.cpu_count(), "torch": torch.__version__, "numba": numba.__version__,
              "model": genesis.chain_id}
    records = [header]
    for threads in thread_counts:
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
        records += bench_matmul(genesis, threads)
        records += bench_train_step(genesis, threads)
    return records
