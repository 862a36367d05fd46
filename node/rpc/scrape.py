"""What GET /metrics reads fresh at each scrape: the chain's height, state and model, the
mempool, and what the node keeps on disk."""
from __future__ import annotations

import asyncio
import math
import os
import pathlib

from node.rpc.metrics import Metrics
from node.rpc.rounds_view import float32
from node.state.chain import Chain
from node.state.mempool import Mempool
from node.storage.blobstore import BlobStore


async def refresh(metrics: Metrics, chain: Chain, mempool: Mempool, blobs: BlobStore) -> None:
    metrics.set("uponode_height", chain.height)
    metrics.set("uponode_mempool_txs", len(mempool))
    metrics.set("uponode_state_entries", len(chain.state.entries))
    model = chain.state.model()
    loss = float32(model.eval_loss_bits)
    metrics.set("uponode_model_round", model.round)
    metrics.set("uponode_eval_loss", math.nan if loss is None else loss)
    # walked off the event loop: a home holds hundreds of blobs
    blob_bytes, db_bytes = await asyncio.to_thread(lambda: (bytes_under(blobs.root), bytes_under(chain.store.path)))
    metrics.set("uponode_blob_bytes", blob_bytes)
    metrics.set("uponode_database_bytes", db_bytes)


def bytes_under(path: pathlib.Path) -> int:
    """The bytes of the files under path (0 if it is gone)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except FileNotFoundError:  # deleted while walked (a pruned blob, a compacted table)
                pass
    return total
