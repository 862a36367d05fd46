"""The light auditor's sending: after a refusal it signs with the nonce that counts its
pending transactions (its earlier reports are still on their way, and reusing their
nonce would lose the rest), it drops a fraud proof of a unit proven already instead of
sending it again every poll, and it sends its fraud proofs after its reports (a proof
the pools take may lose its race at the next block, and the gap its nonce leaves would
hold back every transaction signed after it), and it fills such a gap when one lasts."""
import asyncio

import aiohttp
from aiohttp import web

from node.net.rpc_client import AsyncRpcClient
from node.storage.home import init_home
from node.types.crypto import sha256
from node.types.transactions import AuditReport, FraudProof, Transfer, decode_tx
from node.verify import light_audit
from node.verify.light_audit import LightAuditor

REPORT = AuditReport(round=0, miner=sha256(b"miner"), unit=0, segment=3, result_hash=sha256(b"end"), result_proof=(),
                     evidence=sha256(b"evidence"))
PROOF = FraudProof(0, sha256(b"miner"), 0, 39, sha256(b"a"), (), sha256(b"b"), (), sha256(b"c"))


class FullNode:
    """Committed nonce 2 with one transaction pending (so the next is 3); refuses fraud
    proofs as proven already and takes everything else, recording the nonces."""

    def __init__(self, takes_proofs: bool = False):
        self.takes_proofs = takes_proofs
        self.nonces: list[int] = []
        self.kinds: list[str] = []
        self.txs: list = []
        self.address = ""

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response({"balance": 10**9, "nonce": 2, "bond": 0, "pending_nonce": 3 + len(self.nonces)})

    async def _txs(self, request: web.Request) -> web.Response:
        tx = decode_tx(bytes.fromhex(await request.text()), 1 << 20)
        if isinstance(tx.body.payload, FraudProof) and not self.takes_proofs:
            return web.json_response({"error": "already_proven: this unit is already proven fraudulent",
                                      "reason": "already_proven"}, status=422)
        self.nonces.append(tx.body.nonce)
        self.kinds.append(type(tx.body.payload).__name__)
        self.txs.append(tx)
        return web.json_response({"hash": tx.hash.hex()})

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/accounts/{address}", self._account)
        app.router.add_post("/txs", self._txs)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.address = "127.0.0.1:%d" % runner.addresses[0][1]
        return runner


async def _talking_to(tmp_path, node: FullNode, act):
    """act(auditor) with a light auditor whose one full node is node."""
    runner = await node.start()
    try:
        auditor = LightAuditor(init_home(tmp_path / "home"), [node.address])
        async with aiohttp.ClientSession() as session:
            auditor._clients = [(node.address, AsyncRpcClient(f"http://{node.address}", session))]
            return await act(auditor)
    finally:
        await runner.cleanup()


def _send(tmp_path, node: FullNode, outbox: list) -> list:
    """The auditor's outbox sent to node; what it keeps for the next poll."""
    async def act(auditor: LightAuditor) -> list:
        auditor._outbox = list(outbox)
        await auditor._send_outbox()
        return list(auditor._outbox)

    return asyncio.run(_talking_to(tmp_path, node, act))


def test_a_refused_proof_neither_costs_the_reports_after_it_nor_comes_back(tmp_path):
    node = FullNode()
    kept = _send(tmp_path, node, [REPORT, PROOF, REPORT, REPORT])
    assert node.nonces == [3, 4, 5]  # no nonce used twice after the refused proof
    assert kept == []


def test_fraud_proofs_go_after_the_reports_of_their_batch(tmp_path):
    # a devnet lost a light auditor's reports so: its proof of a faked last segment went
    # into the pools, another auditor's landed first, the pools dropped its own, and the
    # reports signed after it waited behind the gap until their round had closed
    node = FullNode(takes_proofs=True)
    kept = _send(tmp_path, node, [REPORT, PROOF, REPORT, REPORT])
    assert node.kinds == ["AuditReport", "AuditReport", "AuditReport", "FraudProof"]
    assert node.nonces == [3, 4, 5, 6]
    assert kept == []


class GappedNode(FullNode):
    """Answers the account as set in .committed and .pending, counting the requests."""

    def __init__(self):
        super().__init__()
        self.committed, self.pending, self.account_reads = 2, 5, 0

    async def _account(self, request: web.Request) -> web.Response:
        self.account_reads += 1
        return web.json_response({"balance": 10**9, "nonce": self.committed, "bond": 0,
                                  "pending_nonce": self.pending})


def test_a_lasting_gap_in_its_pending_nonces_is_filled_with_a_transfer_to_itself(tmp_path, monkeypatch):
    # signed up to nonce 7; the pools hold 2..4 and 6..7: its proof at 5 lost its race
    monkeypatch.setattr(light_audit, "NONCE_GAP_S", 0.0)
    node = GappedNode()

    async def act(auditor: LightAuditor) -> None:
        auditor.nonce = 8
        await auditor._fill_nonce_gap()
        assert node.txs == []  # seen once: it may be a transaction still on its way
        await auditor._fill_nonce_gap()
        [fill] = node.txs
        assert fill.body.nonce == 5 and fill.body.sender == auditor.key.public_key
        assert fill.body.payload == Transfer(to=auditor.key.public_key, amount=1)
        node.pending = 8
        await auditor._fill_nonce_gap()
        await auditor._fill_nonce_gap()
        assert len(node.txs) == 1
        node.committed = 8  # all of them in blocks: it stops asking
        await auditor._fill_nonce_gap()
        reads = node.account_reads
        await auditor._fill_nonce_gap()
        assert node.account_reads == reads

    asyncio.run(_talking_to(tmp_path, node, act))


def test_a_gap_that_closes_or_has_not_lasted_is_left_alone(tmp_path):
    node = GappedNode()

    async def act(auditor: LightAuditor) -> None:
        auditor.nonce = 8
        await auditor._fill_nonce_gap()
        await auditor._fill_nonce_gap()  # within NONCE_GAP_S of the first sighting
        node.pending = 8  # the missing transaction reached this node by gossip
        await auditor._fill_nonce_gap()
        node.pending = 5
        await auditor._fill_nonce_gap()  # a new sighting, timed from now
        assert node.txs == []

    asyncio.run(_talking_to(tmp_path, node, act))
