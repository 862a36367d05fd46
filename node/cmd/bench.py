"""`uponode bench kernels`: run node.uPoW.kernel_bench and print its records, a line each."""
from __future__ import annotations

import argparse
import json
import sys

from node.cmd.arguments import positive_int, set_numba_threads
from node.types.errors import CommandError
from node.types.genesis import load_genesis

HELP = "benchmarks against torch in the same process"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["kernels"], help="what to benchmark")
    parser.add_argument("--genesis", help="genesis file whose model shapes to use")
    parser.add_argument("--threads", type=positive_int, action="append",
                        help="thread count to measure at (repeatable; default: 1 and all cores)")
    parser.add_argument("--gpu", action="store_true",
                        help="benchmark the CUDA kernels against torch on the GPU (cuBLAS FP32, TF32 off)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line on stdout")


def run(args: argparse.Namespace) -> int:
    set_numba_threads(max(args.threads or [0]) or None)
    from node.uPoW.kernel_bench import cpu_records, gpu_records
    if args.gpu:
        if args.threads:
            raise CommandError("--threads sets CPU thread pools and does not apply with --gpu")
        progress = (lambda message: None) if args.json else _progress
        records = gpu_records(load_genesis(args.genesis), progress)
    else:
        records = cpu_records(load_genesis(args.genesis), args.threads)
    for record in records:
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print("  ".join(f"{k}={v}" for k, v in record.items()))
    return 0


def _progress(message: str) -> None:
    # the warm-ups compile the kernels, which takes a while with nothing to show
    print(f"uponode bench: {message}", file=sys.stderr, flush=True)
