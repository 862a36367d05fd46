"""Opening a node's chain store, beginning it from a peer's snapshot where that is wanted.

- `--state-sync` on an empty home: sync until a snapshot verifies.
- A home (not `--archive`) whose chain stops more than the retention window behind the
  peers' snapshots, an empty one included: the blocks and deltas to replay what it
  missed are pruned everywhere but on archives, so block sync could never catch up.
  A few passes over the offers, then, if none verifies, block sync after all, so that
  peers lying about a snapshot cannot keep a node from starting.  A home with a chain
  syncs into a side store, which replaces the old one only once a snapshot verified;
  a peer's claim alone never deletes anything.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import shutil

from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.genesis import Genesis
from node.verify.state_sync import StateSync, offered_height

log = logging.getLogger("uponode.state_sync")

AUTO_PASSES = 3  # times an automatic state sync asks the peers before it gives up


class Stopped(Exception):
    """The node was asked to stop before its store was ready."""


async def open_chain_store(path: pathlib.Path, genesis: Genesis, blobs: BlobStore, peers: list[str],
                           state_sync: bool, archive: bool, stop: asyncio.Event) -> ChainStore:
    """The node's store at path, begun or replaced from a snapshot as the module says;
    Stopped if stop is set first."""
    for leftover in (_side(path), _old(path)):  # of a replacement a stop or crash cut short
        shutil.rmtree(leftover, ignore_errors=True)
    store = ChainStore.open(path)
    try:
        head = store.head()
        if head is not None:
            if state_sync:
                log.info("--state-sync: this home already holds the chain to height %d; going on from "
                         "there", head.height)
            elif not archive and peers and (offered := await _far_behind(head.height, genesis, peers)):
                log.warning("this home's chain stops at height %d, more than the retention window behind a "
                            "peer's snapshot at height %d: the blocks and rounds it missed are pruned, so "
                            "it begins from a snapshot", head.height, offered)
                store = await _replace_from_snapshot(store, path, genesis, blobs, peers, stop)
            return store
        if state_sync:
            await _until_stopped(StateSync(genesis, store, blobs, peers).run(), stop)
        elif not archive and peers and (offered := await _far_behind(0, genesis, peers)):
            log.info("a peer's snapshot at height %d is past the retention window, whose blocks are "
                     "pruned: beginning from a peer's snapshot (start with --archive to replay the chain "
                     "from genesis instead, from archive peers)", offered)
            if await _until_stopped(StateSync(genesis, store, blobs, peers).run(AUTO_PASSES), stop) is None:
                log.warning("no peer's snapshot verified; replaying the chain from genesis instead")
        return store
    except BaseException:
        store.close()
        raise


async def _far_behind(height: int, genesis: Genesis, peers: list[str]) -> int:
    """The height of the peers' best snapshot if it is more than the retention window
    above height, else 0."""
    window = genesis.consensus.retention_rounds * genesis.consensus.round_blocks
    offered = await offered_height(peers)
    return offered if offered - height > window else 0


async def _replace_from_snapshot(store: ChainStore, path: pathlib.Path, genesis: Genesis, blobs: BlobStore,
                                 peers: list[str], stop: asyncio.Event) -> ChainStore:
    """A store begun from a verified snapshot in place of store; store itself if none verifies."""
    side = ChainStore.open(_side(path))
    try:
        synced = await _until_stopped(StateSync(genesis, side, blobs, peers).run(AUTO_PASSES), stop)
    finally:
        side.close()
    if synced is None:
        shutil.rmtree(_side(path))
        log.warning("no peer's snapshot verified; going on from height %d by block sync",
                    store.head().height)
        return store
    store.close()
    # the old store goes only once the new one is whole; a crash in between leaves an
    # empty or a side store, which the next start begins again
    os.replace(path, _old(path))
    os.replace(_side(path), path)
    shutil.rmtree(_old(path))
    return ChainStore.open(path)


def _side(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".sync")


def _old(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".old")


async def _until_stopped(sync, stop: asyncio.Event):
    """sync's result; Stopped if stop is set first (sync is then cancelled)."""
    task = asyncio.ensure_future(sync)
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task not in done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Stopped
    return task.result()
