"""`uponode train`: one process, no chain, the exact training a miner does."""
from __future__ import annotations

import argparse
import json
import sys
import time

from node.cmd.arguments import non_negative_int, positive_int, set_numba_threads
from node.cmd.progress import ProgressBar
from node.types.errors import CommandError
from node.types.genesis import load_genesis

HELP = "train the genesis model in one process, exactly as a miner does"
DESCRIPTION = "Train the genesis model with the deterministic kernels, no chain."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    parser.add_argument("--steps", type=non_negative_int,
                        help="training steps (default: the genesis's steps_per_unit)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    parser.add_argument("--gpu", action="store_true", help="train on the CUDA backend")
    parser.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    parser.add_argument("--export", metavar="FILE",
                        help="write the trained weights to FILE as safetensors")


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def run(args: argparse.Namespace) -> int:
    set_numba_threads(args.threads)
    genesis = load_genesis(args.genesis)

    import numba

    from node.uPoW.backends import FloatingPointEnvironmentError, backend_for
    from node.uPoW.state import NonFiniteStateError
    from node.uPoW.trainer import Trainer

    backend = backend_for(args.gpu)
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    try:
        trainer = Trainer(genesis, backend=backend)
    except FloatingPointEnvironmentError as exc:
        raise CommandError(str(exc)) from None
    steps = genesis.training.steps_per_unit if args.steps is None else args.steps
    state = trainer.initial_state()
    initial_eval = trainer.eval_loss(state.params)
    start_record = {"event": "start", "chain_id": genesis.chain_id, "steps": steps,
                    "backend": backend.name,
                    "params": trainer.layout.size, "tokens_per_step": trainer.tokens_per_step,
                    "threads": numba.get_num_threads(), "eval_loss": initial_eval}
    if args.json:
        _emit(start_record)
    else:
        where = ("the GPU" if backend.name == "cuda"
                 else f"{numba.get_num_threads()} CPU threads")
        print(f"training {trainer.layout.size:,} parameters for {steps} steps of "
              f"{trainer.tokens_per_step} tokens on {where}; "
              f"eval loss {initial_eval:.4f}", file=sys.stderr)

    bar = None if args.json else ProgressBar(steps, sys.stderr)
    started = time.perf_counter()
    last = started

    def on_step(result) -> None:
        nonlocal last
        now = time.perf_counter()
        tokens_per_s = trainer.tokens_per_step / max(now - last, 1e-9)
        last = now
        if args.json:
            record = {"event": "step", "step": result.step, "loss": result.loss,
                      "grad_norm": result.grad_norm, "tokens_per_s": round(tokens_per_s, 1)}
            if result.state_hash is not None:
                record["state_hash"] = result.state_hash
            _emit(record)
        else:
            bar.update(result.step, f"loss {result.loss:.4f}  {tokens_per_s:,.0f} tok/s")

    try:
        trainer.train(state, steps, on_step)
    except NonFiniteStateError as exc:
        if bar is not None:
            bar.close()
        print(f"uponode train: training failed: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    if bar is not None:
        bar.close()
    final_eval = trainer.eval_loss(state.params)
    digest = trainer.state_hash(state)
    if args.export:
        from node.uPoW.export import export_safetensors
        export_safetensors(trainer.layout, trainer.host_state(state).params, args.export)
    done = {"event": "done", "steps": steps, "seconds": round(elapsed, 3),
            "tokens_per_s": round(steps * trainer.tokens_per_step / max(elapsed, 1e-9), 1),
            "eval_loss_initial": initial_eval, "eval_loss": final_eval, "state_hash": digest}
    if args.json:
        _emit(done)
    else:
        print(f"done: {steps} steps in {elapsed:.1f}s, eval loss {initial_eval:.4f} -> "
              f"{final_eval:.4f}\nstate_hash {digest}")
        if args.export:
            print(f"model written to {args.export}")
    return 0
