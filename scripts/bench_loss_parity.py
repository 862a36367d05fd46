"""Benchmark loss parity: the chain-trained model against `uponode train`, same tokens.

    python scripts/bench_loss_parity.py [--rounds 5] [--miners 4] [--genesis FILE] [--threads N]

Both run in this one process on the same thread count.  The chain side is the
rounds' arithmetic without the ledger: each round every miner trains one unit
from the round's model (train_unit, its data seed from assign_unit with a
stand-in round start hash and a fixed fake miner key), and the round's new model
is the outer step over the decoded deltas in miner order, as the closing block
computes it.  The single-process side is what `uponode train` does: one Trainer
from initial_state(), rounds * miners * steps_per_unit steps.  The held-out eval
loss is taken after each round on the chain side and after each round's worth
of tokens on the single side.  Prints one JSON object.
"""
import argparse
import hashlib
import json
import time

import numba
import numpy as np

from node.types.genesis import Genesis, load_genesis
from node.uPoW.aggregation import eval_loss_bits, outer_step
from node.uPoW.assignment import assign_unit
from node.uPoW.model_state import genesis_model
from node.uPoW.trainer import Trainer
from node.uPoW.work import decode_delta, train_unit


def _eval_loss(trainer: Trainer, params: np.ndarray) -> float:
    """The held-out loss as the chain records it: float32, widened for printing."""
    return float(np.uint32(eval_loss_bits(trainer, params)).view(np.float32))


def _miner_keys(miners: int) -> list[bytes]:
    return [hashlib.sha256(b"miner %d" % index).digest() for index in range(miners)]


def _round_start_hash(round_: int) -> bytes:
    return hashlib.sha256(b"round %d" % round_).digest()


def chain_losses(genesis: Genesis, trainer: Trainer, rounds: int, miners: int) -> list[float]:
    """The eval loss of the chain's model after each round."""
    model = genesis_model(genesis)
    keys = _miner_keys(miners)
    losses = []
    for round_ in range(rounds):
        start_hash = _round_start_hash(round_)
        deltas = []
        for key in keys:
            work = train_unit(trainer, model, assign_unit(start_hash, key, 0).data_seed)
            deltas.append(decode_delta(trainer.layout, work.delta_blob))
        model = outer_step(genesis, model, deltas)
        losses.append(_eval_loss(trainer, model.params))
    return losses


def single_losses(trainer: Trainer, rounds: int, steps_per_round: int) -> list[float]:
    """The eval loss of `uponode train`'s run after each round's worth of steps."""
    state = trainer.initial_state()
    losses = []
    for _ in range(rounds):
        trainer.train(state, steps_per_round)
        losses.append(_eval_loss(trainer, trainer.host_state(state).params))
    return losses


def _timed(fn, *args) -> tuple[list[float], float]:
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="chain rounds")
    parser.add_argument("--miners", type=int, default=4, help="units trained per round")
    parser.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    parser.add_argument("--threads", type=int, help="numba threads (default: numba's)")
    args = parser.parse_args()
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    genesis = load_genesis(args.genesis)
    trainer = Trainer(genesis)
    steps_per_unit = genesis.training.steps_per_unit
    steps_per_round = args.miners * steps_per_unit
    genesis_loss = _eval_loss(trainer, genesis_model(genesis).params)  # also loads the kernels
    chain, chain_s = _timed(chain_losses, genesis, trainer, args.rounds, args.miners)
    single, single_s = _timed(single_losses, trainer, args.rounds, steps_per_round)
    ratio = chain[-1] / single[-1]
    print(json.dumps({
        "genesis": genesis.chain_id, "rounds": args.rounds, "miners": args.miners,
        "steps_per_unit": steps_per_unit,
        "tokens_per_round": steps_per_round * trainer.tokens_per_step,
        "tokens": args.rounds * steps_per_round * trainer.tokens_per_step,
        "threads": numba.get_num_threads(), "genesis_eval_loss": round(genesis_loss, 4),
        "chain_eval_loss": [round(loss, 4) for loss in chain],
        "single_eval_loss": [round(loss, 4) for loss in single],
        "ratio_chain_over_single": round(ratio, 4), "relative_gap": round(ratio - 1, 4),
        "chain_s": round(chain_s, 1), "single_s": round(single_s, 1),
    }))


if __name__ == "__main__":
    main()
