"""The compute worker: a spawned process that trains units with the unit trainer it is
wired with, stores what a challenge asks for, and replays segments, one typed method
per request."""
import asyncio
import pathlib
import subprocess
import sys
import time

from node.storage.blobstore import BlobStore
from node.uPoW.data import UnitStream
from node.uPoW.model_state import ModelState, encode_model
from node.uPoW.state import TrainingState
from node.uPoW.trainer import Trainer
from node.uPoW.unit_compute import ComputeWorker
from node.uPoW.work import UnitWork, commitment_for, decode_leaves, train_unit

SEED = UnitStream(7, 120)
NEXT_SEED = UnitStream(8, 120)
ROOT = pathlib.Path(__file__).resolve().parents[2]


def train_on_the_next_data_seed(trainer: Trainer, model: ModelState, stream: UnitStream,
                                carried: TrainingState | None) -> UnitWork:
    """A cheat: the unit trained on another data stream than the one assigned.  Module
    level, so that the worker process gets it by name."""
    return train_unit(trainer, model, UnitStream(stream.seed + 1, stream.start, stream.step), carried)


def test_the_worker_trains_with_its_unit_trainer_publishes_and_replays(trainer, model, tmp_path):
    genesis = trainer.genesis
    n = genesis.training.segments
    blobs = BlobStore(tmp_path / "blobs")
    model_root = bytes.fromhex(blobs.put(encode_model(model)))
    worker = ComputeWorker(genesis.directory / "genesis.json", tmp_path / "blobs", "cpu",
                           train_on_the_next_data_seed)

    async def main():
        trained = await worker.train(3, 0, 0, model_root, SEED)
        await worker.publish(3, 0, [0, n - 1])
        leaves = decode_leaves(blobs.get(trained.commitment.leaves_hash.hex()))
        replays = [await worker.replay(model_root, seed, n - 1, leaves[n - 1],
                                       trained.commitment.delta_hash) for seed in (SEED, NEXT_SEED)]
        await worker.forget_before(4)
        return trained, leaves, replays

    try:
        trained, leaves, (as_assigned, as_trained) = asyncio.run(main())
    finally:
        worker.close()
    cheat = train_unit(trainer, model, NEXT_SEED)
    assert trained.commitment == commitment_for(3, 0, 0, model_root, cheat)
    assert leaves == cheat.leaves and blobs.has(trained.commitment.delta_hash.hex())
    # the challenged checkpoints, and the end state, which the miner's next unit may carry
    assert [blobs.has(leaf.hex()) for leaf in leaves] == [i in (0, n - 1, n) for i in range(n + 1)]
    # the checkpoint names another data stream than the unit's: not a state of the unit
    assert as_assigned.end_hash is None and "data seed" in as_assigned.invalid_start
    # on the stream it was trained on, the last segment replays to the last leaf and delta
    assert (as_trained.end_hash, as_trained.delta_hash, as_trained.invalid_start) == (
        leaves[n], trained.commitment.delta_hash, None)


_NODE = """
import asyncio, pathlib, sys, time
from node.uPoW.unit_compute import ComputeWorker
worker = ComputeWorker(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
asyncio.run(worker.forget_before(0))  # the worker process is up and initialized
print("ready", flush=True)
time.sleep(120)
"""


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_ends_when_its_node_is_killed(trainer, tmp_path):
    # a node killed with SIGKILL cannot shut its pool down: its worker must notice alone
    node = subprocess.Popen([sys.executable, "-c", _NODE,
                             str(trainer.genesis.directory / "genesis.json"), str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert node.stdout.readline().strip() == "ready"
        children = _children(node.pid)
        assert children  # the worker, and multiprocessing's resource tracker
    finally:
        node.kill()
        node.wait()
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in children)
