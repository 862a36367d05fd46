"""Benchmark the cost of auditing a unit against the cost of mining it, in one process.

    python scripts/bench_audit.py [--genesis FILE] [--repeats 3] [--validators 4] [--choosers N]
    python scripts/bench_audit.py --genesis genesis/testnet.json --one-segment

Mining is train_unit at the genesis's parameters (every checkpoint encoded and
hashed).  Auditing is what the unit's challenge asks of all its auditors together:
one draw per chooser (node.state.records.ChallengeRecord: choosers holding more than
a third of the committee's power, n // 3 + 1 of n equal validators), and for each
draw its auditor checks the start checkpoint, replays the draw's segments
(audit_segments random draws and always the last) and recomputes the delta from the
last checkpoint.  Also prints the chance that a miner faking a fraction f of its
segments is caught by one honest draw.  Prints one JSON object.

With --one-segment (for a model whose unit a CPU cannot train in a benchmark's time,
as the testnet's): one training step and the replay of one challenged segment from an
encoded checkpoint, both on this CPU, and the share of a unit's steps the challenge
replays; a GPU miner's audit fraction in time is that share times its step time over
the auditor's.
"""
import argparse
import json
import os
import random
import statistics
import time

import numba

from node.types.genesis import load_genesis
from node.uPoW.assignment import challenged_segments
from node.uPoW.data import UnitStream
from node.uPoW.model_state import genesis_model
from node.uPoW.state import encode_state, state_hash
from node.uPoW.trainer import Trainer
from node.uPoW.work import train_unit, unit_start_state
from node.uPoW.replay import delta_from_checkpoint, load_checkpoint, replay_segment

FAKED_FRACTIONS = (0.05, 0.1, 0.25, 0.5)


def _audit(trainer: Trainer, model, stream: UnitStream, work, segments: tuple[int, ...]) -> float:
    started = time.perf_counter()
    load_checkpoint(trainer, model, stream, 0, work.checkpoints[0])
    for segment in segments:
        end_hash, _, _ = replay_segment(trainer, model, stream, segment, work.checkpoints[segment])
        if end_hash != work.leaves[segment + 1]:
            raise SystemExit(f"honest segment {segment} did not replay to its leaf")
    delta_hash, _ = delta_from_checkpoint(trainer, model, stream, work.checkpoints[-1])
    if delta_hash != work.delta_hash:
        raise SystemExit("the honest delta did not recompute")
    return time.perf_counter() - started


def _best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def one_segment(genesis, choosers: int) -> dict:
    """The CPU's seconds for one step and for one challenged segment's replay."""
    training = genesis.training
    trainer = Trainer(genesis)
    model = genesis_model(genesis)
    stream = UnitStream(1)
    warm = unit_start_state(trainer, model, stream)
    trainer.step(warm)  # loads the compiled kernels outside the timings
    step_s = _best_of(lambda: trainer.step(warm), 3)
    start = encode_state(trainer.layout, trainer.host_state(unit_start_state(trainer, model, stream)))
    replay_s = _best_of(lambda: replay_segment(trainer, model, stream, 0, start), 1)
    replayed = choosers * (training.audit_segments + 1) * training.checkpoint_every
    return {"genesis": genesis.chain_id, "parameters": trainer.layout.size,
            "tokens_per_step": trainer.tokens_per_step, "steps_per_unit": training.steps_per_unit,
            "checkpoint_every": training.checkpoint_every, "audit_segments": training.audit_segments,
            "choosers": choosers, "threads": numba.get_num_threads(), "cpus": os.cpu_count(),
            "checkpoint_bytes": len(start), "cpu_step_s": round(step_s, 3),
            "cpu_segment_replay_s": round(replay_s, 3), "steps_replayed_per_unit": replayed,
            "replayed_share_of_unit": round(replayed / training.steps_per_unit, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    parser.add_argument("--repeats", type=int, default=3, help="units mined and audited")
    parser.add_argument("--validators", type=int, default=4,
                        help="the committee's equal validators, n (default 4, as `devnet.py up` "
                             "runs the devnet; its genesis file lists one)")
    parser.add_argument("--choosers", type=int, help="draws per unit (default: n // 3 + 1)")
    parser.add_argument("--one-segment", action="store_true",
                        help="time one CPU step and one segment's replay instead of whole units")
    args = parser.parse_args()
    genesis = load_genesis(args.genesis)
    if args.validators < 1 or (args.choosers is not None and args.choosers < 1):
        parser.error("--validators and --choosers must be 1 or more")
    choosers = args.choosers or args.validators // 3 + 1
    if args.one_segment:
        print(json.dumps(one_segment(genesis, choosers)))
        return
    training = genesis.training
    n = training.segments
    trainer = Trainer(genesis)
    model = genesis_model(genesis)
    rng = random.Random(0)
    warm = unit_start_state(trainer, model, UnitStream(0))
    trainer.step(warm)  # loads the compiled kernels outside the timings
    mining, audit, replayed = [], [], []
    for repeat in range(args.repeats):
        stream = UnitStream(rng.getrandbits(64), repeat * training.steps_per_unit)
        started = time.perf_counter()
        work = train_unit(trainer, model, stream)
        mining.append(time.perf_counter() - started)
        miner = rng.randbytes(32)
        draws = [challenged_segments(rng.randbytes(32), miner, repeat, n, training.audit_segments)
                 for _ in range(choosers)]
        audit.append(sum(_audit(trainer, model, stream, work, segments) for segments in draws))
        replayed.append(sum(len(segments) for segments in draws) * training.checkpoint_every)
    mining_s, audit_s = statistics.median(mining), statistics.median(audit)
    print(json.dumps({
        "genesis": genesis.chain_id, "parameters": trainer.layout.size,
        "steps_per_unit": training.steps_per_unit, "checkpoint_every": training.checkpoint_every,
        "segments": n, "audit_segments": training.audit_segments, "choosers": choosers,
        "threads": numba.get_num_threads(), "cpus": os.cpu_count(), "repeats": args.repeats,
        "mining_s": round(mining_s, 4), "audit_s": round(audit_s, 4),
        "audit_fraction": round(audit_s / mining_s, 4),
        "steps_replayed": replayed,
        "state_hash_s": round(_best_of(lambda: state_hash(trainer.layout, warm)), 4),
        "encode_state_s": round(_best_of(lambda: encode_state(trainer.layout, warm)), 4),
        "detection_probability": {
            str(f): round(1 - (1 - f) ** training.audit_segments, 4) for f in FAKED_FRACTIONS},
        "note": "the last segment (and the delta) is always checked: a faked last segment "
                "or delta is caught with probability 1",
    }))


if __name__ == "__main__":
    main()
