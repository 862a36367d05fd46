"""Benchmark loss parity: the chain-trained model against two baselines over the same tokens.

    python scripts/bench_loss_parity.py [--rounds 10] [--miners 4] [--genesis FILE] [--threads N]
                                        [--side-by-side]

All three run from the genesis model on the same thread count, one after another in this
process or, with --side-by-side, as three processes at once (the same arithmetic, so the
same losses; on three free cores a long run takes a third of the time):

- chain: the rounds' arithmetic without the ledger.  Each round every miner trains
  one unit from the round's model (train_unit, its data seed from assign_unit with a
  stand-in round start hash and a fixed fake miner key), carrying the AdamW moments of
  its last unit's end as the chain lets an accepted unit's successor, and the round's
  new model is the outer step over the clipped deltas in miner order, as the closing
  block computes it (close_model).
- single: what `uponode train` does, one Trainer over miners x steps_per_unit steps a
  round: the same tokens, sequentially.
- dp: synchronous data parallelism, one step per unit step over the miners' combined
  batch (miners x batch_size sequences): the same tokens, steps_per_unit steps a round.

The eval loss is the chain's held-out loss, taken after each round (each round's worth
of tokens for the baselines).  Each run's rounds go to stderr as they end, then a table
of all three; the last line on stdout is one JSON object with the final losses and the
gaps, chain over baseline less one (0.05 is 5% above).
"""
import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import sys
import time

import numba
import numpy as np

from node.types.genesis import Genesis, load_genesis
from node.uPoW.aggregation import close_model, eval_loss_bits
from node.uPoW.assignment import assign_unit
from node.uPoW.model_state import genesis_model
from node.uPoW.state import TrainingState, decode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import decode_delta, float32_from_bits, train_unit


def _eval_loss(trainer: Trainer, params: np.ndarray) -> float:
    """The held-out loss as the chain records it: float32, widened for printing."""
    return float32_from_bits(eval_loss_bits(trainer, params))


def _miner_keys(miners: int) -> list[bytes]:
    return [hashlib.sha256(b"miner %d" % index).digest() for index in range(miners)]


def _round_start_hash(round_: int) -> bytes:
    return hashlib.sha256(b"round %d" % round_).digest()


def _progress(run: str, losses: list[float], rounds: int, started: float) -> None:
    # a long run shows each round as it ends: a run of 160 rounds takes an hour
    print(f"{run}: round {len(losses)}/{rounds}, eval loss {losses[-1]:.4f}, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def chain_losses(genesis: Genesis, rounds: int, miners: int) -> list[float]:
    """The eval loss of the chain's model after each round."""
    started = time.perf_counter()
    trainer = Trainer(genesis)
    model = genesis_model(genesis)
    loss_bits = eval_loss_bits(trainer, model.params)
    keys = _miner_keys(miners)
    carried: dict[bytes, TrainingState] = {}  # each miner's last unit's end: every unit is accepted here
    losses = []
    for round_ in range(rounds):
        start_hash = _round_start_hash(round_)
        deltas = []
        for key in keys:
            end = carried.get(key)
            stream = assign_unit(start_hash, key, 0).stream(genesis.training, round_, end.step if end else 0)
            work = train_unit(trainer, model, stream, end)
            carried[key] = decode_state(trainer.layout, work.checkpoints[-1])
            deltas.append(decode_delta(trainer.layout, work.delta_blob))
        closed = close_model(trainer, model, deltas, loss_bits, round_)
        if closed is not None:  # else the close keeps the model, as the chain would
            model, loss_bits = closed
        losses.append(float32_from_bits(loss_bits))
        _progress("chain", losses, rounds, started)
    return losses


def baseline_losses(genesis: Genesis, rounds: int, steps_per_round: int, batch_scale: int,
                    run: str) -> list[float]:
    """The eval loss after each round's worth of steps of one process training with
    batch_scale times the genesis batch."""
    started = time.perf_counter()
    training = dataclasses.replace(genesis.training, batch_size=genesis.training.batch_size * batch_scale)
    trainer = Trainer(dataclasses.replace(genesis, training=training))
    evaluator = Trainer(genesis)  # the chain's eval batches, whatever the training batch
    state = trainer.initial_state()
    losses = []
    for _ in range(rounds):
        trainer.train(state, steps_per_round)
        losses.append(_eval_loss(evaluator, trainer.host_state(state).params))
        _progress(run, losses, rounds, started)
    return losses


def _timed_run(run: str, genesis_path: str | None, rounds: int, miners: int,
               threads: int | None) -> tuple[list[float], float]:
    """One of the three runs, timed; loads its own genesis so that it can run in a process
    of its own."""
    if threads is not None:
        numba.set_num_threads(threads)
    genesis = load_genesis(genesis_path)
    steps = genesis.training.steps_per_unit
    started = time.perf_counter()
    if run == "chain":
        losses = chain_losses(genesis, rounds, miners)
    elif run == "single":
        losses = baseline_losses(genesis, rounds, miners * steps, 1, "single")
    else:
        losses = baseline_losses(genesis, rounds, steps, miners, "dp")
    return losses, time.perf_counter() - started


def _all_runs(args: argparse.Namespace) -> dict[str, tuple[list[float], float]]:
    runs = ("chain", "single", "dp")
    job = (args.genesis, args.rounds, args.miners, args.threads)
    if not args.side_by_side:
        return {run: _timed_run(run, *job) for run in runs}
    # spawn: numba's thread pool does not survive a fork
    with concurrent.futures.ProcessPoolExecutor(len(runs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {run: pool.submit(_timed_run, run, *job) for run in runs}
        return {run: future.result() for run, future in futures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="chain rounds")
    parser.add_argument("--miners", type=int, default=4, help="units trained per round")
    parser.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    parser.add_argument("--threads", type=int, help="numba threads (default: numba's)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run the chain and the two baselines as three processes at once")
    args = parser.parse_args()
    if args.rounds < 1 or args.miners < 1:
        parser.error("--rounds and --miners must be 1 or more")
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    genesis = load_genesis(args.genesis)
    steps = genesis.training.steps_per_unit
    genesis_loss = _eval_loss(Trainer(genesis), genesis_model(genesis).params)  # also loads the kernels
    results = _all_runs(args)
    (chain, chain_s), (single, single_s), (dp, dp_s) = results["chain"], results["single"], results["dp"]
    print("round  chain   single  dp", file=sys.stderr)
    for round_, losses in enumerate(zip(chain, single, dp)):
        print(f"{round_:>5}  " + "  ".join(f"{loss:.4f}" for loss in losses), file=sys.stderr)
    tokens_per_round = args.miners * steps * genesis.training.batch_size * genesis.model.context_length
    print(json.dumps({
        "genesis": genesis.chain_id, "miners": args.miners, "steps_per_unit": steps,
        "tokens_per_round": tokens_per_round, "threads": numba.get_num_threads(),
        "genesis_eval_loss": round(genesis_loss, 4),
        "chain_by_round": [round(x, 4) for x in chain], "single_by_round": [round(x, 4) for x in single],
        "dp_by_round": [round(x, 4) for x in dp],
        "seconds": {"chain": round(chain_s, 1), "single": round(single_s, 1), "dp": round(dp_s, 1)},
        "rounds": args.rounds, "chain_eval_loss": round(chain[-1], 4), "single_eval_loss": round(single[-1], 4),
        "dp_eval_loss": round(dp[-1], 4), "gap_single": round(chain[-1] / single[-1] - 1, 4),
        "gap_dp": round(chain[-1] / dp[-1] - 1, 4),
    }))


if __name__ == "__main__":
    main()
