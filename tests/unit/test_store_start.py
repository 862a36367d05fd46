"""Beginning a node's store: a peer that offers a snapshot it cannot back (a lie to make
a newcomer wait, or a node back from downtime wipe its chain) costs a few passes over
the offers, then the node goes on without it; the store it had is never touched."""
import asyncio

from aiohttp import web

from node.state.chain import Chain
from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.crypto import sha256
from node.types.genesis import load_genesis
from node.verify import state_sync
from node.verify.store_start import open_chain_store
from tests.oracles import NoOracle

GENESIS = load_genesis()
LIE = {"snapshots": [{"height": 5_000, "manifest": sha256(b"nothing").hex()}]}


async def _liar() -> tuple[web.AppRunner, str]:
    """A peer that offers a snapshot at height 5,000 and serves nothing else."""
    async def offer(request: web.Request) -> web.Response:
        return web.json_response(LIE)

    app = web.Application()
    app.router.add_get("/snapshots", offer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, "127.0.0.1:%d" % runner.addresses[0][1]


def _open(tmp_path, path, monkeypatch, caplog) -> ChainStore:
    monkeypatch.setattr(state_sync, "RETRY_S", 0.01)

    async def main() -> ChainStore:
        runner, peer = await _liar()
        try:
            return await open_chain_store(path, GENESIS, BlobStore(tmp_path / "blobs"), [peer],
                                          state_sync=False, archive=False, stop=asyncio.Event())
        finally:
            await runner.cleanup()

    caplog.set_level("INFO", "uponode.state_sync")
    return asyncio.run(main())


def test_an_empty_home_offered_a_snapshot_no_one_backs_replays_from_genesis(tmp_path, monkeypatch, caplog):
    store = _open(tmp_path, tmp_path / "chain", monkeypatch, caplog)
    with store:
        assert store.head() is None  # nothing got in: the chain begins from genesis
    assert "snapshot at height 5000 is past the retention window" in caplog.text
    assert "beginning from a peer's snapshot" in caplog.text
    assert caplog.text.count("is refused") == 3  # one refusal a pass
    assert "replaying the chain from genesis instead" in caplog.text


def test_a_home_far_behind_a_snapshot_no_one_backs_keeps_its_store(tmp_path, monkeypatch, caplog):
    path = tmp_path / "chain"
    with ChainStore.open(path) as store:
        head = Chain(GENESIS, store, NoOracle(GENESIS)).head
    store = _open(tmp_path, path, monkeypatch, caplog)
    with store:
        assert store.head() == head
    assert "more than the retention window" in caplog.text
    assert "going on from height 0 by block sync" in caplog.text
    assert not (tmp_path / "chain.sync").exists() and not (tmp_path / "chain.old").exists()
