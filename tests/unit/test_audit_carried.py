"""An auditor of a unit that carries its miner's AdamW moments: it needs the checkpoint
they come from for segment 0, claims it withheld when the miner does not serve it, and
audits the unit once it is served."""
import asyncio

from node.storage.blobstore import BlobStore
from node.types.crypto import sha256
from node.types.transactions import AuditReport, WithheldClaim
from node.uPoW.data import UnitStream
from node.uPoW.model_state import encode_model
from node.uPoW.state import decode_state
from node.uPoW.unit_compute import UnitCompute
from node.uPoW.work import commitment_for, train_unit
from node.verify.auditor import AuditTask, Auditor

MINER, ME = b"\x0b" * 32, b"\x0a" * 32


def test_the_carried_checkpoint_is_segment_0_s_data(trainer, model, tmp_path):
    steps = trainer.genesis.training.steps_per_unit
    n = trainer.genesis.training.segments
    blobs = BlobStore(tmp_path / "auditor")
    model_root = bytes.fromhex(blobs.put(encode_model(model)))
    previous = train_unit(trainer, model, UnitStream(1))  # the miner's last accepted unit
    end = decode_state(trainer.layout, previous.checkpoints[-1])
    stream = UnitStream(2, steps, end.step)
    work = train_unit(trainer, model, stream, end)
    commitment = commitment_for(1, 0, 0, model_root, work, previous.leaves[-1], end.step)
    served = {sha256(blob): blob for blob in (work.leaves_blob, work.delta_blob, *work.checkpoints)}

    async def fetch(digest: bytes) -> bool:  # the miner's server: everything but the carried checkpoint
        if digest in served:
            blobs.put(served[digest])
        return blobs.has(digest.hex())

    compute = UnitCompute(trainer.genesis, blobs)

    async def replay(*args):
        return compute.replay(*args)

    submitted = []
    auditor = Auditor(trainer.genesis, ME, blobs, fetch, replay, submitted.append)
    task = AuditTask(1, MINER, 0, commitment, stream, (0, n - 1))
    assert not asyncio.run(auditor.audit(task, may_claim=True))
    assert submitted == [WithheldClaim(round=1, miner=MINER, unit=0, segment=0)]

    served[previous.leaves[-1]] = previous.checkpoints[-1]
    submitted.clear()
    assert asyncio.run(auditor.audit(task))
    assert [(r.segment, r.result_hash) for r in submitted if isinstance(r, AuditReport)] == [
        (0, work.leaves[1]), (n - 1, work.leaves[n])]
