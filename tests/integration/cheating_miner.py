"""A cheating miner for tests, never a flag in the product:

    python -m tests.integration.cheating_miner start --home DIR

runs the real `uponode start` with one change in its compute worker: every unit is
trained honestly, then the checkpoint before the last is replaced by a made-up state
(the parameters nudged), and the leaves, Merkle root and commitment follow the fake.
The last segment is always challenged, so an auditor's replay from the fake start
cannot reach the committed last leaf, and the fraud is provable."""
import dataclasses
import sys

import numpy as np

from node import cli
from node.types.crypto import sha256
from node.types.merkle import merkle_root
from node.uPoW import unit_compute
from node.uPoW.state import decode_state, encode_state
from node.uPoW.work import UnitWork, encode_leaves, train_unit


def train_with_a_fake_checkpoint(trainer, model, data_seed, on_step=None) -> UnitWork:
    work = train_unit(trainer, model, data_seed, on_step)
    fake = decode_state(trainer.layout, work.checkpoints[-2])
    fake.params = fake.params + np.float32(1e-3)
    blob = encode_state(trainer.layout, fake)
    leaves = [*work.leaves[:-2], sha256(blob), work.leaves[-1]]
    return dataclasses.replace(work, checkpoints=[*work.checkpoints[:-2], blob, work.checkpoints[-1]],
                               leaves=leaves, leaves_blob=encode_leaves(leaves),
                               checkpoint_root=merkle_root(leaves))


_honest_init = unit_compute._init_worker


def _init_cheating_worker(genesis_path: str, blob_root: str, backend: str) -> None:
    # runs in the spawned worker process, which imports this module by name
    unit_compute.train_unit = train_with_a_fake_checkpoint
    _honest_init(genesis_path, blob_root, backend)


if __name__ == "__main__":
    unit_compute._init_worker = _init_cheating_worker
    sys.exit(cli.main(sys.argv[1:]))
