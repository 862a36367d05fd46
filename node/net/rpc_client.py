"""Clients of a node's HTTP API: RpcClient (blocking, for the command line) and
AsyncRpcClient (aiohttp, for the light-audit node).

Both name the API's paths and read its replies the same way.  Every failure (no
node listening, a timeout, an HTTP error, a reply that is not the API's JSON, a
reply without the fields asked for) is an RpcError whose message is one line
naming the URL and, for an HTTP error, the server's own error text.  The body of
POST /fraud_proofs, which the light-audit node sends and the API reads, is framed
here too.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from node.storage.config import parse_host_port
from node.types.codec import DecodeError
from node.types.errors import CommandError
from node.types.transactions import FraudProof, SignedTx, decode_tx

if TYPE_CHECKING:
    import aiohttp

DEFAULT_RPC = "http://127.0.0.1:26600"
MAX_REPLY = 16 * 1024 * 1024
_MAX_ERROR_TEXT = 300

STATUS_PATH = "/status"
TXS_PATH = "/txs"
FRAUD_PROOFS_PATH = "/fraud_proofs"
_TX_LENGTH_BYTES = 4


def block_path(height: int) -> str:
    return f"/blocks/{height}"


def account_path(address: bytes) -> str:
    return f"/accounts/{address.hex()}"


def encode_fraud_proof_upload(tx: SignedTx, start_blob: bytes) -> bytes:
    """POST /fraud_proofs' body: a signed fraud proof's length (4 bytes, big-endian) and
    encoding, then the start checkpoint its segment replays from, so that the proof can
    be decided even where its miner withholds that checkpoint."""
    raw = tx.encode()
    return len(raw).to_bytes(_TX_LENGTH_BYTES, "big") + raw + start_blob


def fraud_proof_upload_cap(max_tx_bytes: int, max_blob_bytes: int) -> int:
    """The most bytes a POST /fraud_proofs body can take."""
    return _TX_LENGTH_BYTES + max_tx_bytes + max_blob_bytes


def decode_fraud_proof_upload(body: bytes, max_tx_bytes: int) -> tuple[SignedTx, bytes]:
    """(the fraud proof's transaction, the start checkpoint) from a POST /fraud_proofs
    body; DecodeError unless it reads as one.  Whether the checkpoint is the proof's
    start is the receiver's to check."""
    if len(body) < _TX_LENGTH_BYTES:
        raise DecodeError(f"{len(body)} bytes, shorter than the length prefix")
    length = int.from_bytes(body[:_TX_LENGTH_BYTES], "big")
    end = _TX_LENGTH_BYTES + length
    if length > max_tx_bytes:
        raise DecodeError(f"a transaction of {length} bytes exceeds the cap of {max_tx_bytes}")
    if end >= len(body):
        raise DecodeError(f"a transaction of {length} bytes and a checkpoint do not fit in "
                          f"{len(body) - _TX_LENGTH_BYTES} bytes")
    tx = decode_tx(body[_TX_LENGTH_BYTES:end], max_tx_bytes)
    if not isinstance(tx.body.payload, FraudProof):
        raise DecodeError(f"the transaction is a {type(tx.body.payload).__name__}, not a FraudProof")
    return tx, body[end:]


class RpcError(CommandError):
    """A request to a node that failed; the message is one line.  status is the HTTP
    status of an error reply, None when there was no reply."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def http_url(address: str) -> str:
    """The URL a client reaches a node's HTTP API at, from its listen address "host:port";
    a node listening on every interface is reachable on loopback.  ValueError if address
    is not host:port."""
    host, port = parse_host_port(address)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_url(text: str) -> str:
    """The base URL of a node's API, without a trailing slash; ValueError if unusable."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    try:
        parsed.port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    return text.rstrip("/")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_ERROR_TEXT else line[:_MAX_ERROR_TEXT] + "..."


def _error_text(body: bytes, reason: str) -> str:
    """The API's {"error": ...} text, or the start of whatever else the server said."""
    try:
        message = json.loads(body)["error"]
        if isinstance(message, str):
            return _one_line(message)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError):
        pass
    return _one_line(body.decode("utf-8", "replace")) or reason or "no reason given"


def _decode_json(url: str, body: bytes) -> Any:
    if len(body) > MAX_REPLY:
        raise RpcError(f"{url}: the reply exceeds {MAX_REPLY} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RpcError(f"{url}: the reply is not JSON; is this a uponode node?") from None
    except RecursionError:  # "[[[[...": valid JSON nested deeper than the parser goes
        raise RpcError(f"{url}: the reply nests too deep") from None


def _field(url: str, reply: Any, name: str, kind: type) -> Any:
    value = reply.get(name) if isinstance(reply, dict) else None
    # bool is an int to Python, never to the API
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RpcError(f"{url}: the reply holds no {kind.__name__} {name}")
    return value


@dataclasses.dataclass(frozen=True)
class AccountReply:
    """GET /accounts/{address}: an account as the node's chain state has it."""
    balance: int
    nonce: int
    bond: int
    pending_nonce: int  # the nonce to sign the next transaction with, counting the mempool's


def read_account(url: str, reply: Any) -> AccountReply:
    """The reply to GET url (/accounts/{address}); RpcError unless each field is a u64."""
    values = {}
    for field in dataclasses.fields(AccountReply):
        value = _field(url, reply, field.name, int)
        if not 0 <= value < 1 << 64:
            raise RpcError(f"{url}: {field.name} {value} is not a u64")
        values[field.name] = value
    return AccountReply(**values)


def read_block(url: str, reply: Any) -> bytes:
    """GET /blocks/{height}: the block's encoding (its "raw" hex)."""
    return _hex_field(url, reply, "raw")


def read_block_and_commit(url: str, reply: Any) -> tuple[bytes, bytes]:
    """GET /blocks/{height}: the block's encoding and that of the commit that finalized it."""
    return _hex_field(url, reply, "raw"), _hex_field(url, reply, "commit_raw")


def _hex_field(url: str, reply: Any, name: str) -> bytes:
    try:
        return bytes.fromhex(_field(url, reply, name, str))
    except ValueError:
        raise RpcError(f"{url}: the block's {name} is not hex") from None


class RpcClient:
    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = check_url(base_url)
        self.timeout = timeout
        # no proxies: a node is usually on this machine, and an http_proxy in the
        # environment would otherwise swallow requests to 127.0.0.1
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> Any:
        return self._request(urllib.request.Request(self.base_url + path))

    def post_text(self, path: str, text: str) -> Any:
        return self._request(urllib.request.Request(
            self.base_url + path, data=text.encode(), method="POST",
            headers={"Content-Type": "text/plain"}))

    def _request(self, request: urllib.request.Request) -> Any:
        url = request.full_url
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                body = reply.read(MAX_REPLY + 1)
        except urllib.error.HTTPError as exc:
            raise RpcError(f"{url}: HTTP {exc.code}: {_http_error_text(exc)}", exc.code) from None
        except urllib.error.URLError as exc:
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
            raise RpcError(f"cannot reach {url}: {_one_line(str(reason or exc.reason))}") from None
        except (socket.timeout, TimeoutError):
            raise RpcError(f"{url}: no reply within {self.timeout:g} s") from None
        except (OSError, ValueError) as exc:  # a connection reset, a malformed reply
            raise RpcError(f"{url}: {_one_line(str(exc)) or type(exc).__name__}") from None
        return _decode_json(url, body)


def _http_error_text(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(64 * 1024)
    except OSError:
        return exc.reason or "no reason given"
    return _error_text(raw, str(exc.reason))


class AsyncRpcClient:
    """RpcClient's requests on an aiohttp session, for one node followed."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float = 10.0):
        self.base_url = check_url(base_url)
        self.session = session
        self.timeout = timeout

    async def get(self, path: str) -> Any:
        return await self._request("GET", path)

    async def post_text(self, path: str, text: str) -> Any:
        return await self._request("POST", path, text, "text/plain")

    async def post_bytes(self, path: str, data: bytes, timeout: float | None = None) -> Any:
        """POST data; timeout (seconds) replaces the client's for this request."""
        return await self._request("POST", path, data, "application/octet-stream", timeout)

    async def _request(self, method: str, path: str, data: str | bytes | None = None,
                       content_type: str | None = None, timeout: float | None = None) -> Any:
        import aiohttp  # loaded by the light-audit node only: the CLI's commands stay quick

        url = self.base_url + path
        headers = {"Content-Type": content_type} if content_type is not None else None
        timeout = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                async with self.session.request(method, url, data=data, headers=headers,
                                                allow_redirects=False) as reply:
                    body = await _read_capped(reply)
        except TimeoutError:
            raise RpcError(f"{url}: no reply within {timeout:g} s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise RpcError(f"cannot reach {url}: {_one_line(str(exc)) or type(exc).__name__}") \
                from None
        if reply.status != 200:
            raise RpcError(f"{url}: HTTP {reply.status}: {_error_text(body, reply.reason or '')}",
                           reply.status)
        return _decode_json(url, body)


async def _read_capped(reply: aiohttp.ClientResponse) -> bytes:
    """The body, or its first MAX_REPLY + 1 bytes if it is longer."""
    body = bytearray()
    async for chunk in reply.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_REPLY:
            break
    return bytes(body)
