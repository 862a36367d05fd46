"""Benchmark kernels.matmul.matmul_acc against torch.mm at the model's shapes.

Prints one JSON line per (threads, shape): best-of-repeats seconds and
GFLOP/s for both, and ratio = torch seconds / matmul_acc seconds (1.0 means
as fast as torch). torch.mm writes into a preallocated output and gets the
same thread count as numba.
"""
import argparse
import json
import time

import numba
import numpy as np
import torch

from kernels.matmul import matmul_acc

# (M, K, N): C (M, N) += A (M, K) @ B (K, N)
SHAPES = [
    (512, 128, 384),   # qkv projection, C=128, B*T=512
    (512, 128, 128),   # attention output projection
    (512, 128, 512),   # MLP up
    (512, 512, 128),   # MLP down
    (512, 128, 256),   # logits, vocab 256
    (128, 512, 384),   # weight gradient: tokens reduced
    (512, 384, 128),   # input gradient of qkv
    (512, 256, 128),   # input gradient of logits
    (1024, 256, 768),   # C=256, B*T=1024: qkv
    (1024, 256, 256),   # attention output projection, logits
    (1024, 256, 1024),  # MLP up
    (1024, 1024, 256),  # MLP down
    (1024, 768, 256),   # input gradient of qkv
    (256, 1024, 768),   # weight gradient of qkv
    (256, 1024, 1024),  # weight gradient of MLP up
]


def best_seconds(fns: list, repeats: int) -> list[float]:
    """Best time of each function after one warmup call; runs interleave so
    that load from other processes on the machine hits all of them alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def bench_shape(M: int, K: int, N: int, threads: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    C = np.zeros((M, N), dtype=np.float32)
    tA, tB, tC = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C.copy())
    ours, theirs = best_seconds([lambda: matmul_acc(A, B, C), lambda: torch.mm(tA, tB, out=tC)],
                               repeats)
    flops = 2.0 * M * N * K
    return {"M": M, "K": K, "N": N, "threads": threads,
            "matmul_acc_s": ours, "torch_s": theirs,
            "matmul_acc_gflops": round(flops / ours / 1e9, 1),
            "torch_gflops": round(flops / theirs / 1e9, 1),
            "ratio": round(theirs / ours, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for threads in args.threads:
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
        for M, K, N in SHAPES:
            print(json.dumps(bench_shape(M, K, N, threads, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
