"""POST /fraud_proofs (a fraud proof with the checkpoint it starts from) and a fraud
proof POSTed to /txs, through a real aiohttp server and client over a real chain:
both go to the node's admit_fraud_proof, never straight into the mempool, and bad
input gets a one-line 4xx.  Deciding the proof is the intake's (test_fraud_proof_spam)."""
import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from node.net.rpc_client import FRAUD_PROOFS_PATH, encode_fraud_proof_upload
from node.state.mempool import MempoolError
from node.storage.chainstore import ChainStore
from node.types.crypto import sha256
from node.types.transactions import FraudProof, Transfer, sign_tx
from node.uPoW.state import blob_limit
from tests.integration.test_rpc import FEE, GENESIS, USER, build_chain, expect_error, make_api, make_app

pytestmark = pytest.mark.asyncio

START = b"the checkpoint the proof starts from"
PROOF = sign_tx(USER, "chain-test", 3, FraudProof(0, bytes(32), 0, 1, sha256(START), (), sha256(b"b"), (),
                                                   sha256(b"c")), FEE)


class Admissions:
    """Records what the API hands the node; refuses with `refusal` if set."""

    def __init__(self):
        self.calls: list = []
        self.refusal: MempoolError | None = None

    async def __call__(self, tx, start_blob) -> None:
        self.calls.append((tx, start_blob))
        if self.refusal is not None:
            raise self.refusal


@pytest.fixture
def admissions():
    return Admissions()


@pytest.fixture
def sent():
    return []


@pytest_asyncio.fixture
async def client(tmp_path, admissions, sent):
    with ChainStore.open(tmp_path / "db") as store:
        chain = build_chain(store)
        runner = web.AppRunner(make_app(make_api(chain, sent, admit_fraud_proof=admissions)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with aiohttp.ClientSession("http://%s:%d" % runner.addresses[0][:2]) as session:
            yield session
        await runner.cleanup()


async def test_a_fraud_proof_with_its_start_goes_to_the_node_and_is_gossiped(client, admissions, sent):
    async with client.post(FRAUD_PROOFS_PATH, data=encode_fraud_proof_upload(PROOF, START)) as reply:
        assert reply.status == 200 and await reply.json() == {"hash": PROOF.hash.hex()}
    assert admissions.calls == [(PROOF, START)] and sent == [PROOF]


async def test_a_fraud_proof_posted_to_txs_is_decided_before_the_mempool(client, admissions, sent):
    async with client.post("/txs", data=PROOF.encode().hex()) as reply:
        assert reply.status == 200
    assert admissions.calls == [(PROOF, None)] and sent == [PROOF]
    async with client.get("/metrics") as reply:
        assert "uponode_mempool_txs 0\n" in await reply.text()  # the node's to add, not the API's


async def test_a_refused_fraud_proof_is_a_422_with_its_reason(client, admissions, sent):
    admissions.refusal = MempoolError("failed_prover", "a fraud proof from this sender showed no fraud")
    reply = await client.post(FRAUD_PROOFS_PATH, data=encode_fraud_proof_upload(PROOF, START))
    await expect_error(reply, 422, "failed_prover")
    assert (await reply.json())["reason"] == "failed_prover" and sent == []


TRANSFER = sign_tx(USER, "chain-test", 3, Transfer(bytes(32), 1), FEE)


@pytest.mark.parametrize("body,needle", [
    (b"", "shorter than the length prefix"),
    (b"\x00\x01", "shorter than the length prefix"),
    ((1 << 31).to_bytes(4, "big") + b"x", "exceeds the cap"),
    (len(PROOF.encode()).to_bytes(4, "big") + PROOF.encode(), "do not fit"),
    (encode_fraud_proof_upload(TRANSFER, START), "not a FraudProof"),
    ((5).to_bytes(4, "big") + b"\x00" * 5 + START, "not a fraud proof and its start checkpoint"),
])
async def test_an_upload_that_does_not_read_is_a_400(client, admissions, body, needle):
    await expect_error(await client.post(FRAUD_PROOFS_PATH, data=body), 400, needle)
    assert admissions.calls == []


async def test_an_upload_over_the_cap_is_a_413(client, admissions):
    # the cap leaves room for the largest transaction the genesis allows beside the
    # largest blob of its chain
    cap = 4 + GENESIS.consensus.max_tx_bytes + blob_limit(GENESIS)
    body = encode_fraud_proof_upload(PROOF, b"x" * (cap + 1 - 4 - len(PROOF.encode())))
    assert len(body) == cap + 1
    await expect_error(await client.post(FRAUD_PROOFS_PATH, data=body), 413, "exceeds")
    assert admissions.calls == []
