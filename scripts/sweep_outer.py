"""Sweep the outer optimizer: the chain's eval loss for each outer learning rate and momentum.

    python scripts/sweep_outer.py [--rounds 10] [--miners 4] [--lr 0.5,0.7,1.0] [--momentum 0.6,0.8,0.9]

Each setting runs the chain's rounds exactly as bench_loss_parity's chain side does
(every miner trains a unit from the round's model; the close clips the deltas and takes
the outer Nesterov step), from the same genesis with only outer.learning_rate and
outer.momentum replaced, so the losses differ by the setting alone (they are the same
bits on any machine; only the seconds depend on it).  A table goes to stderr, one JSON
line per setting to stdout, and last one JSON object naming the best.
"""
import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numba

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.types.genesis import load_genesis  # noqa: E402
from scripts.bench_loss_parity import chain_losses  # noqa: E402


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.5,0.7, got {text!r}") from None
    if not all(0.0 <= value <= 10.0 for value in values):
        raise argparse.ArgumentTypeError(f"values must lie in [0, 10], got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--miners", type=int, default=4)
    parser.add_argument("--lr", type=_floats, default=[0.5, 0.7, 1.0], help="outer learning rates")
    parser.add_argument("--momentum", type=_floats, default=[0.6, 0.8, 0.9], help="outer momenta (below 1)")
    parser.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    parser.add_argument("--threads", type=int, help="numba threads (default: numba's)")
    args = parser.parse_args()
    if args.rounds < 1 or args.miners < 1:
        parser.error("--rounds and --miners must be 1 or more")
    if any(mu >= 1.0 for mu in args.momentum):
        parser.error("--momentum: each value must be below 1")
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    genesis = load_genesis(args.genesis)
    results = []
    for lr in args.lr:
        for mu in args.momentum:
            setting = dataclasses.replace(genesis, outer=dataclasses.replace(genesis.outer, learning_rate=lr,
                                                                             momentum=mu))
            started = time.perf_counter()
            losses = chain_losses(setting, args.rounds, args.miners)
            result = {"outer_lr": lr, "outer_momentum": mu, "chain_by_round": [round(x, 4) for x in losses],
                      "chain_eval_loss": round(losses[-1], 4), "seconds": round(time.perf_counter() - started, 1)}
            results.append(result)
            print(json.dumps(result), flush=True)
    print("outer lr  momentum  eval loss after round " + str(args.rounds), file=sys.stderr)
    for r in results:
        print(f"{r['outer_lr']:>8}  {r['outer_momentum']:>8}  {r['chain_eval_loss']:.4f}", file=sys.stderr)
    best = min(results, key=lambda r: r["chain_eval_loss"])
    print(json.dumps({"genesis": genesis.chain_id, "rounds": args.rounds, "miners": args.miners,
                      "best": {k: best[k] for k in ("outer_lr", "outer_momentum", "chain_eval_loss")}}))


if __name__ == "__main__":
    main()
