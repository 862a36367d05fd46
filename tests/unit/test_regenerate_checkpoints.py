"""A miner that restarts between commit and challenge has lost its checkpoints (the
compute worker keeps them in memory): a fresh UnitCompute re-trains the committed unit
and stores the challenged checkpoints byte for byte as the first would have, and only
where the re-trained work is exactly the commitment.  The miner learns what to answer
from the commitments on chain, not from its memory."""
import asyncio
import dataclasses
import shutil

from node.storage.blobstore import BlobStore
from node.types.crypto import SigningKey, sha256
from node.uPoW.assignment import assign_unit
from node.uPoW.data import UnitStream
from node.uPoW.evidence import evidence_lock
from node.uPoW.mining import Miner
from node.uPoW.model_state import encode_model
from node.uPoW.rounds import RoundSchedule
from node.uPoW.unit_compute import UnitCompute
from node.uPoW.work import decode_leaves

MINER = SigningKey(sha256(b"restarted miner")).public_key
ROUND, UNIT = 3, 0
START_HASH = sha256(b"round 3 start block")


def _trained_then_crashed(trainer, model, blob_root):
    """A UnitCompute that trained and committed the unit, and the commitment."""
    compute = UnitCompute(trainer.genesis, BlobStore(blob_root))
    model_root = bytes.fromhex(compute.blobs.put(encode_model(model)))
    assignment = assign_unit(START_HASH, MINER, UNIT)
    stream = assignment.stream(trainer.genesis.training, ROUND)
    trained = compute.train(ROUND, UNIT, assignment.shard, model_root, stream)
    return compute, trained.commitment, stream


def test_a_restarted_compute_publishes_the_challenged_checkpoints_byte_for_byte(
        trainer, model, tmp_path):
    n = trainer.genesis.training.segments
    challenged = [1, n - 1]
    first, commitment, stream = _trained_then_crashed(trainer, model, tmp_path / "first")
    # the blob directory as the crash left it, for the compute of the restarted node
    shutil.copytree(tmp_path / "first", tmp_path / "restarted")
    restarted = UnitCompute(trainer.genesis, BlobStore(tmp_path / "restarted"))

    assert restarted.publish(ROUND, UNIT, challenged) is None  # nothing kept in memory
    assert restarted.held_evidence(commitment, stream, challenged) is None
    regenerated = restarted.publish_regenerated(commitment, stream, challenged)
    # once stored, a later restart finds the same digests by replaying the segments
    assert restarted.held_evidence(commitment, stream, challenged) == regenerated

    # what the first would have stored, and the digests its commitment locks
    assert first.publish(ROUND, UNIT, challenged) == regenerated
    assert [evidence_lock(d) for d in regenerated] == [commitment.evidence_locks[s] for s in challenged]
    leaves = decode_leaves(first.blobs.get(commitment.leaves_hash.hex()))
    for index, leaf in enumerate(leaves):
        stored = [compute.blobs.has(leaf.hex()) for compute in (first, restarted)]
        # the challenged checkpoints, and the end state the miner's next unit may carry
        assert stored == [index in challenged or index == n] * 2, index
        if index in challenged:
            assert restarted.blobs.get(leaf.hex()) == first.blobs.get(leaf.hex())
    files = [sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
             for root in (tmp_path / "first", tmp_path / "restarted")]
    assert files[0] == files[1]


def test_a_commitment_the_regenerated_work_does_not_match_publishes_nothing(
        trainer, model, tmp_path):
    n = trainer.genesis.training.segments
    challenged = [0, n - 1]
    _, commitment, stream = _trained_then_crashed(trainer, model, tmp_path / "blobs")
    restarted = UnitCompute(trainer.genesis, BlobStore(tmp_path / "blobs"))
    leaves = decode_leaves(restarted.blobs.get(commitment.leaves_hash.hex()))
    not_this_work = dataclasses.replace(commitment, delta_hash=sha256(b"another delta"))

    assert restarted.publish_regenerated(not_this_work, stream, challenged) is None
    assert restarted.publish_regenerated(commitment, UnitStream(stream.seed + 1, stream.start), challenged) is None
    assert not any(restarted.blobs.has(leaf.hex()) for leaf in leaves[:n])  # leaf n: the first run's end state


class _Worker:
    """A compute worker that lost its memory (held=False) or not, recording its calls."""

    def __init__(self, held: bool):
        self.held = held
        self.calls: list[tuple] = []

    async def publish(self, round_, unit, segments):
        self.calls.append(("publish", round_, unit, segments))
        return [bytes(32)] * len(segments) if self.held else None

    async def held_evidence(self, commitment, stream, segments):
        self.calls.append(("held_evidence", commitment, stream, segments))
        return None

    async def publish_regenerated(self, commitment, stream, segments):
        self.calls.append(("publish_regenerated", commitment, stream, segments))
        return [bytes(32)] * len(segments)

    async def forget_before(self, round_):
        self.calls.append(("forget_before", round_))


def _answer_challenge(genesis, worker, commitment, height: int) -> None:
    """A fresh Miner (as after a restart: it started no round) told of the challenge."""
    async def main():
        miner = Miner(genesis, MINER, worker, lambda tx: None, lambda: height)
        miner.on_challenge(ROUND, (sha256(b"challenge"),), START_HASH, [commitment])
        await asyncio.gather(*miner.tasks)
    asyncio.run(main())


def test_a_restarted_miner_answers_the_commitments_on_chain_re_training_only_what_it_lost(
        trainer, model, tmp_path):
    genesis = trainer.genesis
    _, commitment, stream = _trained_then_crashed(trainer, model, tmp_path / "blobs")
    schedule = RoundSchedule.from_genesis(genesis)
    challenge_height = schedule.challenge_height(ROUND)

    kept = _Worker(held=True)
    _answer_challenge(genesis, kept, commitment, challenge_height)
    assert [c[0] for c in kept.calls] == ["publish", "forget_before"]

    lost = _Worker(held=False)
    _answer_challenge(genesis, lost, commitment, challenge_height)
    assert [c[0] for c in lost.calls] == ["publish", "held_evidence", "publish_regenerated",
                                          "forget_before"]
    assert lost.calls[2][1:3] == (commitment, stream)

    too_late = _Worker(held=False)
    _answer_challenge(genesis, too_late, commitment, schedule.close_height(ROUND))
    assert "publish_regenerated" not in [c[0] for c in too_late.calls]
