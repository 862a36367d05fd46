"""A poisoning miner for tests, never a flag in the product:

    python -m tests.integration.poisoning_miner --home DIR [start's other options]

runs the real `uponode start` on a Node wired with one change, its unit trainer (the
seam node/uPoW/unit_compute.py documents): every unit is trained honestly, then the
checkpoint before the last is replaced by the worst state the bounds let through
(each parameter pushed 90% of its reach from the round's model, alternately up and
down) and the last step is trained honestly from it.  The last segment replays, the
delta follows from the last checkpoint, and the forged checkpoint is in reach, so
only a draw of the segment before the last (1 in 40 at the devnet's settings) proves
it: the poison reaches the close in most rounds."""
import dataclasses
import functools
import hashlib
import sys

import numpy as np

from node.cli import build_parser
from node.cmd import start
from node.node import Node
from node.types.merkle import merkle_root
from node.uPoW.bounds import adamw_bounds
from node.uPoW.data import UnitStream
from node.uPoW.model_state import ModelState
from node.uPoW.replay import load_checkpoint
from node.uPoW.state import TrainingState, decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import UnitWork, encode_leaves, train_unit, unit_delta

PUSH = 0.9  # of the reach: inside the bounds, so no checkpoint check refuses it


def train_with_poison(trainer: Trainer, model: ModelState, stream: UnitStream,
                      carried: TrainingState | None) -> UnitWork:
    work = train_unit(trainer, model, stream, carried)
    n = trainer.genesis.training.segments
    forged = decode_state(trainer.layout, work.checkpoints[n - 1])
    bounds = adamw_bounds(trainer.genesis.training, trainer.genesis.model)
    steps = forged.step - stream.step
    reach = bounds.reach(model.params, steps, forged.data_cursor - steps, stream.step)
    signs = np.where(np.arange(reach.size) % 2, 1.0, -1.0)
    forged.params = (model.params.astype(np.float64) + signs * PUSH * reach).astype(np.float32)
    blob = encode_state(trainer.layout, forged)
    state = load_checkpoint(trainer, model, stream, n - 1, blob)
    for _ in range(trainer.checkpoint_every):
        result = trainer.step(state)
    end = trainer.host_state(state)
    end_blob = encode_state(trainer.layout, end)
    delta_hash, delta_blob = unit_delta(model, end.params)
    leaves = [*work.leaves[:-2], hashlib.sha256(blob).digest(), bytes.fromhex(result.state_hash)]
    losses = (*work.loss_trace[:-1], int(np.float32(result.loss).view(np.uint32)))
    return dataclasses.replace(work, checkpoints=[*work.checkpoints[:-2], blob, end_blob], leaves=leaves,
                               leaves_blob=encode_leaves(leaves), checkpoint_root=merkle_root(leaves),
                               delta_blob=delta_blob, delta_hash=delta_hash, loss_trace=losses,
                               evidence=(*work.evidence[:-1], result.gradient_digest))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(["start", *argv])
    # the compute worker's process gets the trainer by pickling, by its module's name
    return start.run(args, functools.partial(Node, unit_trainer=train_with_poison))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
