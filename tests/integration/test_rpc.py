"""The HTTP API over a real chain, through a real aiohttp server and client: each
endpoint's answer, and a one-line JSON error with a 4xx for each kind of bad input.

The helpers here (a chain with a few finalized blocks, a server on its own thread)
are shared with the RPC fuzz test and the status/tx command-line test."""
from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import importlib.resources
import json
import math
import re
import threading
from typing import Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from node.types import genesis as g
from node.types.blocks import Block, certificate_from_precommits
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from node.state.chain import Chain
from node.types.crypto import SigningKey, sha256
from node.state.mempool import Mempool, MempoolError
from node.rpc.metrics import NODE_METRICS, Metrics
from node.rpc import api as rpc
from node.rpc.api import MAX_HEADERS, NodeAPI, json_errors, rpc_routes
from node.rpc.rate_limit import LIMITS, Limit, RateLimits
from node.rpc.status import NodeStatus
from node.storage.blobstore import QUARANTINE, BlobStore
from node.storage.chainstore import ChainStore
from node.state.records import AccountRecord, account_key
from node.state.snapshot_store import SnapshotRef
from node.types.state_proof import StateProof, verify_state_proof
from node.types.transactions import Bond, RegisterMiner, SignedTx, Transfer, WorkCommitment, sign_tx
from node.uPoW.assignment import assign_unit
from node.uPoW.oracle import KERNEL_VERSION
from node.uPoW.rounds import RoundSchedule
from tests.oracles import NoOracle

VALIDATORS = [SigningKey(sha256(b"validator %d" % i)) for i in range(4)]
USER = SigningKey(sha256(b"user"))
GENESIS = dataclasses.replace(
    g.load_genesis(), chain_id="chain-test",
    validators=tuple(g.Validator(k.public_key, 10) for k in VALIDATORS),
    accounts=(g.Account(USER.public_key, 10_000, 0),),
    # small enough for USER to bond: the HTTP view is the subject here, not the economics
    economics=dataclasses.replace(g.load_genesis().economics, min_miner_bond=1_000))
FEE = GENESIS.economics.min_tx_fee
NODE_STATUS = NodeStatus(syncing=False, peers=[("cd" * 32, "10.0.0.2:26600")], consensus_round=1)


def finalize_next(chain: Chain, txs: list[SignedTx], time_ms: int = 1_700_000_000_000) -> Block:
    """Propose a block of txs and finalize it with every validator's precommit."""
    block, refused = chain.propose(txs, VALIDATORS[0].public_key, time_ms)
    assert not refused
    body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
    chain.finalize(block, certificate_from_precommits(
        [sign_vote(k, chain.genesis.chain_id, body) for k in VALIDATORS]))
    return block



def build_chain(store: ChainStore, genesis: g.Genesis = GENESIS, sender: SigningKey = USER) -> Chain:
    """A chain at height 3: a transfer, an empty block, then a transfer and a bond."""
    chain = Chain(genesis, store, NoOracle(genesis))
    cid = genesis.chain_id
    finalize_next(chain, [sign_tx(sender, cid, 0, Transfer(VALIDATORS[1].public_key, 100), FEE)])
    finalize_next(chain, [])
    finalize_next(chain, [sign_tx(sender, cid, 1, Transfer(VALIDATORS[2].public_key, 50), FEE),
                          sign_tx(sender, cid, 2, Bond(25), FEE)])
    return chain


def make_api(chain: Chain, sent: list | None = None, blobs: BlobStore | None = None,
             admit_fraud_proof=None) -> NodeAPI:
    """The API over chain; blobs, unless given, in a store beside the chain's; fraud
    proofs, unless admit_fraud_proof is given, refused as a node refuses one it cannot
    decide (tests/unit/test_fraud_proof_api.py covers that endpoint)."""
    async def undecidable(tx: SignedTx, start_blob: bytes | None) -> None:
        raise MempoolError("unavailable", "no replay here")
    return NodeAPI(chain=chain, mempool=Mempool(1000, chain.genesis.consensus.max_tx_bytes,
                                                chain.genesis.economics),
                   metrics=Metrics(), node_status=lambda: NODE_STATUS,
                   on_tx=(sent if sent is not None else []).append,
                   blobs=blobs or BlobStore(chain.store.path.parent / "blobs"),
                   admit_fraud_proof=admit_fraud_proof or undecidable)


def make_app(api: NodeAPI, limits: RateLimits | None = None) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app.add_routes(rpc_routes(api, limits))
    return app


def unlimited() -> RateLimits:
    """For tests that send a client's worth of requests for other reasons (fuzzing)."""
    return RateLimits({kind: Limit(1e9, 1e9) for kind in LIMITS})


class ServerThread:
    """The API served on 127.0.0.1 from a thread with its own event loop, for tests
    whose client blocks (hypothesis, subprocesses); without rate limits, since those
    send far more requests than any one client should."""

    def __init__(self, api: NodeAPI):
        self.api = api
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        self._runner = web.AppRunner(make_app(self.api, unlimited()))
        self.call(self._start)
        return self

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def call(self, fn: Callable):
        """Run fn (a coroutine function or a plain one) on the server's loop: the chain
        and mempool belong to that thread while it serves."""
        async def run():
            result = fn()
            return await result if asyncio.iscoroutine(result) else result
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def __exit__(self, *exc) -> None:
        self.call(self._runner.cleanup)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


# -- the async tests below run server and client in the test's own loop

pytestmark = pytest.mark.asyncio


@pytest.fixture
def chain(tmp_path):
    with ChainStore.open(tmp_path / "db") as store:
        yield build_chain(store)


@pytest.fixture
def sent():
    return []


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(tmp_path / "blobs")


@pytest_asyncio.fixture
async def server_address(chain, sent, blobs):
    runner = web.AppRunner(make_app(make_api(chain, sent, blobs)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][:2]
    await runner.cleanup()


@pytest_asyncio.fixture
async def client(server_address):
    async with aiohttp.ClientSession("http://%s:%d" % server_address) as session:
        yield session


async def raw_exchange(address, request: bytes) -> tuple[int, str]:
    """Send request bytes as they are (framing no client library would produce);
    the reply's status and body."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        await writer.drain()
        # read just the reply: the server may keep the connection to drain an unread body
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
        body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(head.split()[1]), body.decode()


async def expect_error(reply: aiohttp.ClientResponse, status: int, *needles: str) -> str:
    assert reply.status == status, await reply.text()
    body = await reply.json()
    assert list(body) in (["error"], ["error", "reason"])
    assert "\n" not in body["error"]
    for needle in needles:
        assert needle in body["error"]
    return body["error"]


async def test_status(client, chain):
    async with client.get("/status") as reply:
        assert reply.status == 200
        body = await reply.json()
    # at height 3 the next block is in round 0's training phase; no round has closed, so
    # the model is genesis's, whose eval loss is not measured yet
    assert json.dumps(body) == json.dumps({
        "chain_id": "chain-test", "height": 3, "head_hash": chain.head.block_hash.hex(),
        "syncing": False, "peers": [{"key": "cd" * 32, "address": "10.0.0.2:26600"}],
        "consensus_round": 1, "round": 0, "phase": "train",
        "model": {"round": 0, "root": chain.state.model().root.hex(), "eval_loss": None},
        "committee": [{"key": m.pub_key.hex(), "power": m.power} for m in chain.state.committee().members]})
    assert {m["key"] for m in body["committee"]} == {k.public_key.hex() for k in VALIDATORS}


async def test_block(client, chain):
    async with client.get("/blocks/3") as reply:
        assert reply.status == 200
        body = await reply.json()
    block = chain.block(3)
    assert body["header"]["hash"] == block.hash.hex() == chain.head.block_hash.hex()
    assert Block.decode(bytes.fromhex(body["raw"])) == block
    header = body["header"]
    assert header["height"] == 3 and header["chain_id"] == "chain-test"
    assert header["prev_hash"] == chain.block(2).hash.hex()
    assert header["proposer"] == VALIDATORS[0].public_key.hex()
    transfer, bond = body["txs"]
    assert transfer == {"hash": block.txs[0].hash.hex(), "sender": USER.public_key.hex(),
                        "nonce": 1, "fee": FEE, "kind": "transfer",
                        "fields": {"to": VALIDATORS[2].public_key.hex(), "amount": 50}}
    assert bond["kind"] == "bond" and bond["fields"] == {"amount": 25}
    commit = body["last_commit"]
    assert commit["height"] == 2 and commit["block_hash"] == chain.block(2).hash.hex()
    assert sorted(commit["signers"]) == sorted(k.public_key.hex() for k in VALIDATORS)
    assert body["commit_raw"] == chain.encoded_commit(3).hex()  # the commit that finalized it


async def test_pruned_blocks_are_404_and_the_committee_changes_are_listed(client, chain):
    async with client.get("/committee_changes") as reply:
        assert reply.status == 200 and await reply.json() == {"heights": []}
    assert chain.prune_blocks(3) == 2
    await expect_error(await client.get("/blocks/2"), 404, "no block at height 2 (this node keeps blocks 3..3")
    await expect_error(await client.get("/headers?from=1"), 404, "keeps headers from height 3 (older blocks "
                                                                 "are pruned")
    async with client.get("/blocks/3") as reply:
        assert reply.status == 200


async def test_first_block_carries_an_empty_commit(client):
    async with client.get("/blocks/1") as reply:
        body = await reply.json()
    assert body["last_commit"]["signers"] == [] and body["txs"][0]["nonce"] == 0


@pytest.mark.parametrize("height,status", [
    ("abc", 400), ("-1", 400), ("1.5", 400), ("0x1", 400), ("٣", 400), ("9" * 21, 400),
    ("0", 404), ("4", 404), ("18446744073709551616", 404), ("99999999999999999999", 404),
])
async def test_block_bad_height(client, height, status):
    await expect_error(await client.get(f"/blocks/{height}"), status, "height")


async def test_headers_range(client, chain):
    async with client.get("/headers", params={"from": "2", "to": "3"}) as reply:
        assert reply.status == 200
        headers = (await reply.json())["headers"]
    assert [h["height"] for h in headers] == [2, 3]
    assert [h["hash"] for h in headers] == [chain.block(2).hash.hex(), chain.block(3).hash.hex()]
    assert headers[1]["state_root"] == chain.head.state_root.hex()


@pytest.mark.parametrize("params,heights", [
    ({}, [1, 2, 3]), ({"from": "2"}, [2, 3]), ({"to": "1"}, [1]),
    ({"from": "3", "to": "50"}, [3]), ({"from": "7", "to": "9"}, []),
])
async def test_headers_defaults_and_clamping(client, params, heights):
    async with client.get("/headers", params=params) as reply:
        assert [h["height"] for h in (await reply.json())["headers"]] == heights


@pytest.mark.parametrize("query,needle", [
    ("from=a", "from"), ("to=-3", "to"), ("from=0&to=2", "from must be 1"),
    ("from=3&to=2", "below"), (f"from=1&to={MAX_HEADERS + 1}", "at most"),
    ("from=1&from=2", "more than once"), ("form=1", "unknown query parameter"),
    ("from=" + "9" * 30, "from"),
])
async def test_headers_bad_query(client, query, needle):
    await expect_error(await client.get(f"/headers?{query}"), 400, needle)


async def test_account(client):
    async with client.get(f"/accounts/{USER.public_key.hex()}") as reply:
        assert reply.status == 200
        body = await reply.json()
    assert body == {"address": USER.public_key.hex(), "balance": 10_000 - 100 - 50 - 25 - 3 * FEE,
                    "nonce": 3, "bond": 25, "pending_nonce": 3}
    async with client.get(f"/accounts/{USER.public_key.hex().upper()}") as reply:
        assert (await reply.json())["nonce"] == 3


async def test_unknown_account_is_all_zeros(client):
    async with client.get("/accounts/" + "ab" * 32) as reply:
        assert await reply.json() == {"address": "ab" * 32, "balance": 0, "nonce": 0, "bond": 0,
                                      "pending_nonce": 0}


@pytest.mark.parametrize("address", [USER.public_key.hex(), "ab" * 32])
async def test_an_account_comes_with_a_proof_against_the_header_s_state_root(client, chain, address):
    """A light client checks the reply against a header it trusts: the account's record,
    or its absence for an account never written (all zeros)."""
    async with client.get(f"/accounts/{address}?proof=1") as reply:
        assert reply.status == 200
        body = await reply.json()
    proof = StateProof.from_json(body["proof"])
    header = chain.block(body["proof"]["height"]).header
    assert body["proof"]["state_root"] == header.state_root.hex()
    key = account_key(bytes.fromhex(address))
    value = chain.state.entries.get(key)
    assert (value is None) == (address != USER.public_key.hex())
    assert verify_state_proof(header.state_root, key, value, proof)
    if value is not None:
        assert AccountRecord.decode(value) == AccountRecord(body["balance"], body["nonce"], body["bond"])
    # the same proof does not vouch for another balance
    forged = AccountRecord(body["balance"] + 1, body["nonce"], body["bond"]).encode()
    assert not verify_state_proof(header.state_root, key, forged, proof)


async def test_snapshots_are_listed_newest_first(chain, blobs):
    kept = [SnapshotRef(30, sha256(b"first")), SnapshotRef(60, sha256(b"second"))]
    api = dataclasses.replace(make_api(chain, blobs=blobs), snapshots=lambda: kept)
    async with aiohttp.ClientSession() as session:
        runner = web.AppRunner(make_app(api))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            host, port = runner.addresses[0][:2]
            async with session.get(f"http://{host}:{port}/snapshots") as reply:
                assert reply.status == 200
                body = await reply.json()
        finally:
            await runner.cleanup()
    assert body == {"snapshots": [{"height": 60, "manifest": sha256(b"second").hex()},
                                  {"height": 30, "manifest": sha256(b"first").hex()}]}


async def test_a_node_without_snapshots_lists_none(client):
    async with client.get("/snapshots") as reply:
        assert await reply.json() == {"snapshots": []}


@pytest.mark.parametrize("value", ["yes", "2", "", "1" * 50])
async def test_account_bad_proof_flag(client, value):
    await expect_error(await client.get(f"/accounts/{USER.public_key.hex()}?proof={value}"), 400, "proof must be")


@pytest.mark.parametrize("address", ["ab" * 31, "ab" * 33, "zz" * 32, "ab" * 31 + "a", "-"])
async def test_account_bad_address(client, address):
    await expect_error(await client.get(f"/accounts/{address}"), 400, "64 hex digits")


async def test_post_tx_is_pending_and_gossiped(client, chain, sent):
    tx = sign_tx(USER, "chain-test", 3, Transfer(VALIDATORS[3].public_key, 1), FEE)
    async with client.post("/txs", data=tx.encode().hex() + "\n") as reply:
        assert reply.status == 200
        assert await reply.json() == {"hash": tx.hash.hex()}
    assert sent == [tx]
    async with client.get(f"/accounts/{USER.public_key.hex()}") as reply:
        assert (await reply.json())["pending_nonce"] == 4
    async with client.get("/metrics") as reply:
        text = await reply.text()
    assert "uponode_txs_received_total 1\n" in text and "uponode_mempool_txs 1\n" in text


@pytest.mark.parametrize("body,needle", [
    (b"", "hex digits"), (b"xyz", "hex digits"), (b"abc", "hex digits"), (b"ab cd", "hex digits"),
    (b"\xff\xfe", "hex digits"), (b"00" * 10, "not a signed transaction"),
])
async def test_post_tx_undecodable(client, body, needle):
    await expect_error(await client.post("/txs", data=body), 400, needle)


async def test_post_tx_too_large(client, chain):
    cap = 2 * chain.genesis.consensus.max_tx_bytes
    await expect_error(await client.post("/txs", data=b"00" * cap), 413, "exceeds")

    async def chunks():  # no Content-Length: the server must stop reading by itself
        for _ in range(cap // 4096 + 2):
            yield b"0" * 4096
    await expect_error(await client.post("/txs", data=chunks()), 413, "exceeds")


def post_txs(headers: str, body: bytes) -> bytes:
    return (b"POST /txs HTTP/1.1\r\nHost: node\r\nConnection: close\r\n" + headers.encode()
            + b"\r\n" + body)


@pytest.mark.parametrize("request_bytes,status,needle", [
    # refused by aiohttp's parser before any handler runs
    (post_txs("Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"), 400, "chunk"),
    (post_txs("Content-Encoding: gzip\r\nContent-Length: 5\r\n", b"abcde"), 400,
     "cannot be read"),
    # 50 MB of zeros in 50 kB: the server stops inflating at its cap
    (post_txs("Content-Encoding: gzip\r\nContent-Length: 50989\r\n",
              gzip.compress(b"0" * (50 << 20), mtime=0)), 413, "exceeds"),
])
async def test_post_tx_bad_framing_and_encoding(server_address, request_bytes, status, needle):
    reply_status, body = await raw_exchange(server_address, request_bytes)
    assert reply_status == status and needle in body


async def test_post_tx_body_that_never_arrives(server_address, monkeypatch):
    monkeypatch.setattr(rpc, "BODY_TIMEOUT_S", 0.2)
    status, body = await raw_exchange(server_address, post_txs("Content-Length: 10\r\n", b"abcd"))
    assert status == 408 and "did not arrive" in json.loads(body)["error"]


@pytest.mark.parametrize("tx,reason", [
    (sign_tx(USER, "other-chain", 3, Transfer(bytes(32), 1), FEE), "bad_signature"),
    (sign_tx(USER, "chain-test", 2, Transfer(bytes(32), 1), FEE), "nonce_replayed"),
    (sign_tx(USER, "chain-test", 500, Transfer(bytes(32), 1), FEE), "nonce_too_far"),
])
async def test_post_tx_refused_by_the_mempool(client, sent, tx, reason):
    reply = await client.post("/txs", data=tx.encode().hex())
    await expect_error(reply, 422, reason)
    assert (await reply.json())["reason"] == reason and sent == []


async def test_tx_status_of_an_included_transaction(client, chain):
    bond = sign_tx(USER, chain.genesis.chain_id, 2, Bond(25), FEE)  # build_chain's, at height 3
    async with client.get(f"/txs/{bond.hash.hex()}") as reply:
        assert reply.status == 200
        assert await reply.json() == {"hash": bond.hash.hex(), "status": "included", "height": 3,
                                      "index": 1, "result": "ok"}


@pytest.mark.parametrize("value", ["ab" * 31, "AB" * 32, "zz" * 32, "ab" * 32 + "0"])
async def test_tx_status_bad_hash(client, value):
    await expect_error(await client.get(f"/txs/{value}"), 400, "a transaction hash is 64 lowercase hex digits")


async def test_post_tx_twice_is_a_duplicate(client):
    tx = sign_tx(USER, "chain-test", 3, Transfer(bytes(32), 1), FEE)
    assert (await client.post("/txs", data=tx.encode().hex())).status == 200
    await expect_error(await client.post("/txs", data=tx.encode().hex()), 422, "duplicate")


async def test_metrics(client):
    async with client.get("/metrics") as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = await reply.text()
    # read by Prometheus's own parser: every family the node documents, with its type
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for kind, name, *_ in NODE_METRICS:
        assert families[name.removesuffix("_total")].type == kind, name
    value = {f.name: f.samples[0].value for f in families.values() if f.samples and not f.samples[0].labels}
    assert value["uponode_height"] == 3 and value["uponode_model_round"] == 0
    assert math.isnan(value["uponode_eval_loss"])  # no round has closed
    assert value["uponode_database_bytes"] > 0 and value["uponode_blob_bytes"] == 0


async def test_dashboard(client):
    async with client.get("/") as reply:
        assert reply.status == 200 and reply.content_type == "text/html"
        page = await reply.text()
    # the page installed beside the API's module, served as it is
    assert page == (importlib.resources.files("node.rpc") / rpc.DASHBOARD_FILE).read_text("utf-8")
    assert page.startswith("<!doctype html>") and "<h1>uponode</h1>" in page
    assert "/status" in page and "/headers" in page
    assert "http://" not in page and "https://" not in page  # no external assets


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/nowhere", 404), ("GET", "/blocks/", 404), ("GET", "/blobs/", 404), ("DELETE", "/status", 405), ("GET", "/txs", 405),
    ("POST", "/status", 405),
])
async def test_unknown_routes_and_methods_are_json_errors(client, method, path, status):
    await expect_error(await client.request(method, path), status)


async def test_round_under_way_without_units(client, chain):
    async with client.get("/rounds/0") as reply:
        assert reply.status == 200
        body = await reply.json()
    schedule = RoundSchedule.from_genesis(chain.genesis)
    assert body == {"round": 0, "phase": schedule.phase(4), "start_height": 0,
                    "commit_deadline": schedule.commit_deadline(0),
                    "challenge_height": schedule.challenge_height(0),
                    "close_height": schedule.close_height(0),
                    "units": [], "rewards": [], "model_root": None, "eval_loss": None}
    assert body["phase"] == "train"


async def test_round_with_a_committed_unit(client, chain):
    training = chain.genesis.training
    loss_trace = (0x40400000,) * (training.steps_per_unit - 1) + (0x40200000,)  # ..., 2.5
    commitment = WorkCommitment(
        round=0, unit=0, shard=assign_unit(chain.state.round_start_hash(0), USER.public_key, 0).shard,
        start_root=chain.state.model().root, checkpoint_root=b"\x01" * 32,
        checkpoint_count=training.segments + 1,
        leaves_hash=b"\x02" * 32, delta_hash=b"\x03" * 32, loss_trace=loss_trace,
        kernel_version=KERNEL_VERSION, evidence_locks=(b"\x04" * 32,) * training.segments)
    cid = chain.genesis.chain_id
    finalize_next(chain, [sign_tx(USER, cid, 3, Bond(chain.genesis.economics.min_miner_bond), FEE),
                          sign_tx(USER, cid, 4, RegisterMiner(1), FEE),
                          sign_tx(USER, cid, 5, commitment, FEE)])
    async with client.get("/rounds/0") as reply:
        assert reply.status == 200
        (unit,) = (await reply.json())["units"]
    assert unit == {"miner": USER.public_key.hex(), "unit": 0, "shard": commitment.shard,
                    "status": "committed", "checkpoint_root": "01" * 32,
                    "checkpoint_count": commitment.checkpoint_count, "delta_hash": "03" * 32, "carried": None,
                    "final_loss": 2.5, "audits": [], "fraud": None}


@pytest.mark.parametrize("round_,status", [
    ("1", 404), ("99999999999999999999", 404),
    ("abc", 400), ("-1", 400), ("0x0", 400), ("1e3", 400), ("٣", 400), ("9" * 21, 400),
])
async def test_round_bad_or_not_started(client, round_, status):
    await expect_error(await client.get(f"/rounds/{round_}"), status, "round")


async def test_a_round_past_the_retention_window_is_404_and_a_kept_one_is_not(client, chain):
    schedule = RoundSchedule.from_genesis(chain.genesis)
    window = chain.genesis.consensus.retention_rounds
    while chain.height < schedule.close_height(window):  # round `window` closes: round 0 leaves
        finalize_next(chain, [])
    await expect_error(await client.get("/rounds/0"), 404, "round 0 has left the retention window: "
                       f"the state keeps rounds from 1 on (consensus.retention_rounds {window})")
    async with client.get("/rounds/1") as reply:
        assert reply.status == 200 and (await reply.json())["phase"] == "closed"


BLOB = b"delta bytes " * 10_000


async def test_blob(client, blobs):
    digest = blobs.put(BLOB)
    async with client.get(f"/blobs/{digest}") as reply:
        assert reply.status == 200
        assert reply.content_type == "application/octet-stream"
        assert reply.content_length == len(BLOB)
        assert await reply.read() == BLOB


async def test_blob_absent(client):
    await expect_error(await client.get(f"/blobs/{hashlib.sha256(BLOB).hexdigest()}"), 404,
                       "no blob")


@pytest.mark.parametrize("digest", [
    "ab" * 31, "ab" * 33, "AB" * 32, "zz" * 32, "ab" * 31 + "a", "-", "ab" * 32 + "x",
])
async def test_blob_bad_digest(client, digest):
    await expect_error(await client.get(f"/blobs/{digest}"), 400, "64 lowercase hex digits")


async def test_corrupted_blob_is_quarantined_and_absent(client, blobs):
    digest = blobs.put(BLOB)
    path = blobs.root / digest[:2] / digest
    path.write_bytes(BLOB[:-1] + b"?")
    await expect_error(await client.get(f"/blobs/{digest}"), 404, "no blob")
    assert not path.exists() and len(list((blobs.root / QUARANTINE).iterdir())) == 1
    await expect_error(await client.get(f"/blobs/{digest}"), 404, "no blob")


async def test_a_client_over_its_rate_gets_429_and_its_cheap_reads_go_on(client):
    burst = int(LIMITS["rounds"].burst)
    statuses = []
    for _ in range(burst + 1):
        async with client.get("/rounds/0") as reply:
            statuses.append(reply.status)
            body = await reply.json()
            retry = reply.headers.get("Retry-After")
    assert statuses == [200] * burst + [429]
    assert "rate limited" in body["error"] and int(retry) >= 1
    async with client.get("/status") as reply:
        assert reply.status == 200
    async with client.get("/headers") as reply:
        assert reply.status == 200
