"""A cheating miner for tests, never a flag in the product:

    python -m tests.integration.cheating_miner --home DIR [start's other options]

runs the real `uponode start` on a Node wired with one change, its unit trainer
(the seam node/uPoW/unit_compute.py documents): every unit is trained honestly,
then the checkpoint before the last is replaced by a made-up state (the
parameters nudged), and the leaves, Merkle root and commitment follow the fake.
The last segment is always challenged, so an auditor's replay from the fake
start cannot reach the committed last leaf, and the fraud is provable."""
import dataclasses
import functools
import sys

import numpy as np

from node.cli import build_parser
from node.cmd import start
from node.node import Node
from node.types.crypto import sha256
from node.types.merkle import merkle_root
from node.uPoW.data import UnitStream
from node.uPoW.model_state import ModelState
from node.uPoW.state import TrainingState, decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import UnitWork, encode_leaves, train_unit


def train_with_a_fake_checkpoint(trainer: Trainer, model: ModelState, stream: UnitStream,
                                 carried: TrainingState | None) -> UnitWork:
    work = train_unit(trainer, model, stream, carried)
    fake = decode_state(trainer.layout, work.checkpoints[-2])
    fake.params = fake.params + np.float32(1e-3)
    blob = encode_state(trainer.layout, fake)
    leaves = [*work.leaves[:-2], sha256(blob), work.leaves[-1]]
    return dataclasses.replace(work, checkpoints=[*work.checkpoints[:-2], blob, work.checkpoints[-1]],
                               leaves=leaves, leaves_blob=encode_leaves(leaves),
                               checkpoint_root=merkle_root(leaves))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(["start", *argv])
    # the compute worker's process gets the trainer by pickling, by its module's name
    return start.run(args, functools.partial(Node, unit_trainer=train_with_a_fake_checkpoint))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
