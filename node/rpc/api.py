"""The node's HTTP API (DESIGN.md §6) as aiohttp routes.

Every route checks its input before touching the chain and answers bad input with
a 4xx and {"error": "<one line>"}; nothing a client sends leads to a 5xx.  The
routes only read the chain and the blob store: a POSTed transaction goes to the
mempool, and on to the node (to gossip it) through `on_tx`.  A fraud proof goes
through `admit_fraud_proof`, which decides its replay off the event loop first;
POST /fraud_proofs takes one together with the checkpoint it starts from, for a
prover whose miner may withhold that checkpoint from everyone else.  What the node alone
knows (syncing, peers, consensus round) comes from `node_status`, never guessed here.
GET / serves the dashboard, a static page beside this module that reads the API.

The node mounts these routes on its one aiohttp application, with `json_errors`
among its middlewares so that aiohttp's own 404/405 answers are JSON as well.
"""
from __future__ import annotations

import asyncio
import dataclasses
import importlib.resources
import json
import re
from typing import Awaitable, Callable

from aiohttp import web

from node.net.rpc_client import decode_fraud_proof_upload, fraud_proof_upload_cap
from node.types.blocks import Block, BlockHeader, RoundClose
from node.state.chain import Chain
from node.types.codec import DecodeError, Reader
from node.state.mempool import Mempool, MempoolError
from node.state.records import account_key
from node.state.retention import first_kept_round
from node.state.snapshot_store import SnapshotRef
from node.rpc.metrics import CONTENT_TYPE, Metrics
from node.rpc.json_views import commit_json, header_json, tx_json
from node.rpc.rate_limit import RateLimits, retry_header
from node.rpc.rounds_view import round_view
from node.rpc.scrape import refresh
from node.rpc.status import NodeStatus, status_json
from node.storage.blobstore import BlobCorrupted, BlobNotFound, BlobStore
from node.types.transactions import Bond, FraudProof, SignedTx, Transfer, Unbond, decode_tx
from node.uPoW.rounds import RoundSchedule
from node.uPoW.state import blob_limit

MAX_HEADERS = 1000  # per /headers request
BODY_TIMEOUT_S = 10
_MAX_HEIGHT_DIGITS = 20  # 2^64 has 20 digits; longer input is refused before int()
_HEX_TX = re.compile(rb"(?:[0-9a-fA-F]{2})+")
_ADDRESS = re.compile(r"[0-9a-fA-F]{64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
DASHBOARD_FILE = "dashboard.html"


@dataclasses.dataclass
class NodeAPI:
    """What the endpoints need from the node."""
    chain: Chain
    mempool: Mempool
    metrics: Metrics
    node_status: Callable[[], NodeStatus]  # syncing, peers, consensus round
    on_tx: Callable[[SignedTx], None]  # called once a POSTed tx is in the mempool
    blobs: BlobStore  # the checkpoints, deltas and models it serves
    # puts a fraud proof in the mempool once its replay is decided (with its start
    # checkpoint, if sent), or raises MempoolError
    admit_fraud_proof: Callable[[SignedTx, bytes | None], Awaitable[None]]
    # the snapshots this node keeps for state sync, oldest first
    snapshots: Callable[[], list[SnapshotRef]] = list


class _ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _quoted(text: str) -> str:
    """Client text inside an error message: bounded and on one line."""
    return json.dumps(text if len(text) <= 40 else text[:40] + "...")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


# -- input parsing

def _height(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_HEIGHT_DIGITS:
        raise _ClientError(400, f"{name} must be a non-negative integer, got {_quoted(text)}")
    return int(text)


def _address(text: str) -> bytes:
    if not _ADDRESS.fullmatch(text):
        raise _ClientError(400, f"an address is 64 hex digits, got {_quoted(text)}")
    return bytes.fromhex(text)


def _digest(text: str, what: str) -> str:
    if not _DIGEST.fullmatch(text):
        raise _ClientError(400, f"{what} is 64 lowercase hex digits, got {_quoted(text)}")
    return text


async def _read_capped(request: web.Request, cap: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed cap bytes
    (after any Content-Encoding is undone), and with 408 if it is slow to arrive."""
    too_large = _ClientError(413, f"the body exceeds {cap} bytes")
    if request.content_length is not None and request.content_length > cap:
        raise too_large
    body = bytearray()
    try:
        # a client that promises more than it sends must not hold the handler forever
        async with asyncio.timeout(BODY_TIMEOUT_S):
            while chunk := await request.content.read(cap + 1 - len(body)):
                body += chunk
                if len(body) > cap:
                    raise too_large
    except TimeoutError:
        raise _ClientError(408, f"the body did not arrive within {BODY_TIMEOUT_S} s") from None
    except web.RequestPayloadError as exc:  # bad chunked framing, undecodable gzip, ...
        raise _ClientError(400, f"the body cannot be read: {_one_line(exc)}") from None
    return bytes(body)


# -- endpoints

async def _status(api: NodeAPI, request: web.Request) -> web.Response:
    return web.json_response(status_json(api.chain, api.node_status()))


async def _block(api: NodeAPI, request: web.Request) -> web.Response:
    height = _height(request.match_info["height"], "height")
    chain = api.chain
    raw = chain.encoded_block(height) if 1 <= height <= chain.height else None
    if raw is None:
        raise _ClientError(404, f"no block at height {height} (this node keeps blocks {chain.base}.."
                                f"{chain.height}, and below them those that changed the committee)")
    block = Block.decode(raw)
    return web.json_response({
        "header": header_json(block.header),
        "txs": [tx_json(tx) for tx in block.txs], "last_commit": commit_json(block.last_commit),
        "raw": raw.hex(), "commit_raw": chain.encoded_commit(height).hex()})


async def _committee_changes(api: NodeAPI, request: web.Request) -> web.Response:
    """The heights of the blocks that changed the committee: what a node following the
    chain from genesis without executing it must read (each is kept however old)."""
    return web.json_response({"heights": api.chain.landmarks()})


async def _headers(api: NodeAPI, request: web.Request) -> web.Response:
    for name in request.query:
        if name not in ("from", "to"):
            raise _ClientError(400, f"unknown query parameter {_quoted(name)} (expected from, to)")
        if len(request.query.getall(name)) > 1:
            raise _ClientError(400, f"query parameter {name} is given more than once")
    head = api.chain.height
    first = _height(request.query["from"], "from") if "from" in request.query else api.chain.base
    last = _height(request.query["to"], "to") if "to" in request.query else head
    if first < 1:
        raise _ClientError(400, "from must be 1 or more (genesis has no header)")
    if last < first:
        raise _ClientError(400, f"to ({last}) is below from ({first})")
    if first < api.chain.base:
        raise _ClientError(404, f"this node keeps headers from height {api.chain.base} (older blocks "
                                f"are pruned, or it began from a snapshot there)")
    if "to" in request.query and last - first + 1 > MAX_HEADERS:
        raise _ClientError(400, f"{last - first + 1} headers asked for, at most {MAX_HEADERS} "
                                f"per request")
    last = min(last, head, first + MAX_HEADERS - 1)
    headers = []
    for height in range(first, last + 1):
        # a block's encoding starts with its header: decode just that part
        headers.append(header_json(BlockHeader.read(Reader(api.chain.encoded_block(height)))))
    return web.json_response({"headers": headers})


def _decode_tx_body(body: bytes, max_bytes: int) -> SignedTx:
    if not _HEX_TX.fullmatch(body):
        raise _ClientError(400, "the body must be a signed transaction as hex digits")
    try:
        return decode_tx(bytes.fromhex(body.decode("ascii")), max_bytes)
    except DecodeError as exc:
        raise _ClientError(400, f"not a signed transaction: {exc}") from None


async def _post_tx(api: NodeAPI, request: web.Request) -> web.Response:
    max_bytes = api.chain.genesis.consensus.max_tx_bytes

    async def read() -> tuple[SignedTx, None]:
        # hex text, with room for surrounding whitespace such as a trailing newline
        body = (await _read_capped(request, 2 * max_bytes + 64)).strip()
        return _decode_tx_body(body, max_bytes), None
    return await _admit(api, read)


async def _post_fraud_proof(api: NodeAPI, request: web.Request) -> web.Response:
    max_bytes = api.chain.genesis.consensus.max_tx_bytes

    async def read() -> tuple[SignedTx, bytes]:
        body = await _read_capped(request, fraud_proof_upload_cap(max_bytes, blob_limit(api.chain.genesis)))
        try:
            return decode_fraud_proof_upload(body, max_bytes)
        except DecodeError as exc:
            raise _ClientError(400, f"not a fraud proof and its start checkpoint: {exc}") from None
    return await _admit(api, read)


async def _admit(api: NodeAPI,
                 read: Callable[[], Awaitable[tuple[SignedTx, bytes | None]]]) -> web.Response:
    """Admit the transaction read() gives (a fraud proof through admit_fraud_proof, with
    the start checkpoint read() gives), count it, and answer."""
    try:
        tx, start_blob = await read()
        if isinstance(tx.body.payload, FraudProof):
            await api.admit_fraud_proof(tx, start_blob)
        else:
            _refuse_money_tx_that_would_fail(api.chain, tx)
            api.mempool.add(tx, api.chain.state, api.chain.genesis.chain_id)
    except _ClientError:
        api.metrics.inc("uponode_txs_refused_total")
        raise
    except MempoolError as exc:
        api.metrics.inc("uponode_txs_refused_total")
        return web.json_response({"error": str(exc), "reason": exc.reason}, status=422)
    api.metrics.inc("uponode_txs_received_total")
    api.on_tx(tx)
    return web.json_response({"hash": tx.hash.hex()})


async def _tx_status(api: NodeAPI, request: web.Request) -> web.Response:
    """Where a transaction stands, as far as this node knows: included in a block it keeps
    (a block holds only transactions that applied, so the result is "ok"), pending in its
    pool, or unknown, with the reason code if its pool dropped it lately."""
    tx_hash = bytes.fromhex(_digest(request.match_info["hash"], "a transaction hash"))
    location = api.chain.store.tx_location(tx_hash)
    if location is not None:
        height, index = location
        return web.json_response({"hash": tx_hash.hex(), "status": "included", "height": height,
                                  "index": index, "result": "ok"})
    if tx_hash in api.mempool:
        return web.json_response({"hash": tx_hash.hex(), "status": "pending"})
    reason = api.mempool.dropped_reason(tx_hash)
    return web.json_response({"hash": tx_hash.hex(), "status": "unknown",
                              **({} if reason is None else {"result": reason})})


def _refuse_money_tx_that_would_fail(chain: Chain, tx: SignedTx) -> None:
    """A transfer, bond or unbond whose turn is next (no earlier nonce pending) and that the
    next block could not apply is refused here with the rule's reason: such a transaction
    depends on the state alone, so waiting would not help, and its sender learns why now
    rather than from a proposer's pool.  Other kinds may wait for their round's phase."""
    if isinstance(tx.body.payload, (Transfer, Bond, Unbond)) \
            and tx.body.nonce == chain.state.account(tx.body.sender).nonce:
        error = chain.refusal_next(tx)
        if error is not None:
            raise MempoolError(error.reason, error.detail)


async def _account(api: NodeAPI, request: web.Request) -> web.Response:
    address = _address(request.match_info["address"])
    wants_proof = request.query.get("proof", "0")
    if wants_proof not in ("0", "1"):
        raise _ClientError(400, f"proof must be 0 or 1, got {_quoted(wants_proof)}")
    account = api.chain.state.account(address)
    reply = {"address": address.hex(), "balance": account.balance, "nonce": account.nonce,
             "bond": account.bond,
             # the nonce to sign a new transaction with, counting those already pending
             "pending_nonce": api.mempool.next_nonce(address, account.nonce)}
    if wants_proof == "1":
        # against the state root in the header at this height; an account never
        # written is proven absent (its balance, nonce and bond are zero)
        head = api.chain.head
        reply["proof"] = {"height": head.height, "state_root": head.state_root.hex(),
                          **api.chain.state.prove(account_key(address)).to_json()}
    return web.json_response(reply)


async def _snapshots(api: NodeAPI, request: web.Request) -> web.Response:
    """The snapshots kept, the newest first: their chunks and manifests are blobs."""
    return web.json_response({"snapshots": [ref.to_json() for ref in reversed(api.snapshots())]})


def _round_close(chain: Chain, schedule: RoundSchedule, round_: int) -> RoundClose | None:
    """What round_'s closing block decided; None while it is not finalized."""
    if chain.height < schedule.close_height(round_):
        return None
    closing = chain.block(schedule.close_height(round_))
    return closing.close[0] if closing.close else None


async def _round(api: NodeAPI, request: web.Request) -> web.Response:
    round_ = _height(request.match_info["round"], "round")
    chain = api.chain
    schedule = RoundSchedule.from_genesis(chain.genesis)
    if schedule.start_height(round_) > chain.height:
        raise _ClientError(404, f"round {round_} has not started (the chain is at height "
                                f"{chain.height}, in round {schedule.round_of(chain.height + 1)})")
    kept = first_kept_round(chain.genesis.consensus, chain.height)
    if round_ < kept:
        raise _ClientError(404, f"round {round_} has left the retention window: the state keeps rounds "
                                f"from {kept} on (consensus.retention_rounds "
                                f"{chain.genesis.consensus.retention_rounds})")
    if schedule.close_height(round_) < chain.base <= chain.height:
        raise _ClientError(404, f"round {round_} closed at height {schedule.close_height(round_)}, before "
                                f"the first block this node keeps ({chain.base})")
    state = chain.state
    commitments = state.round_commitments(round_)
    frauds = {(miner, unit): fraud for miner, unit, _ in commitments
              if (fraud := state.fraud_record(round_, miner, unit)) is not None}
    close = _round_close(chain, schedule, round_)
    return web.json_response(round_view(round_, schedule, chain.height, commitments,
                                        state.round_audits(round_), frauds, close))


async def _blob(api: NodeAPI, request: web.Request) -> web.Response:
    digest = _digest(request.match_info["digest"], "a blob digest")
    try:
        # off the event loop: a blob can be tens of MB to read and hash
        data = await asyncio.to_thread(api.blobs.get, digest)
    except (BlobNotFound, BlobCorrupted):  # a corrupted blob is quarantined: as good as absent
        raise _ClientError(404, f"no blob {digest}") from None
    return web.Response(body=data, content_type="application/octet-stream")


async def _metrics(api: NodeAPI, request: web.Request) -> web.Response:
    await refresh(api.metrics, api.chain, api.mempool, api.blobs)
    return web.Response(body=api.metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})


def rpc_routes(api: NodeAPI, limits: RateLimits | None = None) -> list[web.RouteDef]:
    """The API's routes over api; bad input gets its 4xx from the route itself, and a
    client over its rate on a costly endpoint a 429 (limits: node.rpc.rate_limit)."""
    # read once, here, so that an install without the page fails at start, not on a visit
    page = importlib.resources.files(__package__).joinpath(DASHBOARD_FILE).read_text("utf-8")
    limits = limits if limits is not None else RateLimits()

    async def dashboard(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    def bind(endpoint: Callable[[NodeAPI, web.Request], Awaitable[web.StreamResponse]],
             limited: str | None = None):
        async def route(request: web.Request) -> web.StreamResponse:
            if limited is not None:
                wait = limits.retry_after(request.remote or "", limited, asyncio.get_running_loop().time())
                if wait is not None:
                    return web.json_response(
                        {"error": f"rate limited: too many {limited} requests from this client; "
                                  f"retry in {wait:.2f} s"},
                        status=429, headers={"Retry-After": retry_header(wait)})
            try:
                return await endpoint(api, request)
            except _ClientError as exc:
                return _error(exc.status, str(exc))
        return route
    return [
        web.get("/", dashboard),
        web.get("/status", bind(_status)),
        web.get("/blocks/{height}", bind(_block, "blocks")),
        web.get("/headers", bind(_headers, "headers")),
        web.post("/txs", bind(_post_tx, "txs")),
        web.get("/txs/{hash}", bind(_tx_status)),
        web.post("/fraud_proofs", bind(_post_fraud_proof, "fraud_proofs")),
        web.get("/accounts/{address}", bind(_account)),
        web.get("/snapshots", bind(_snapshots)),
        web.get("/committee_changes", bind(_committee_changes)),
        web.get("/rounds/{round}", bind(_round, "rounds")),
        web.get("/blobs/{digest}", bind(_blob, "blobs")),
        web.get("/metrics", bind(_metrics)),
    ]


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """aiohttp's own client errors (no such route, wrong method, ...) as JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not 400 <= exc.status < 500:
            raise
        where = f"{request.method} {_quoted(request.path)}"
        message = {404: f"no such endpoint: {where}",
                   405: f"method not allowed: {where}"}.get(exc.status, exc.reason)
        return web.json_response({"error": message}, status=exc.status, headers={
            k: v for k, v in exc.headers.items() if k == "Allow"})
