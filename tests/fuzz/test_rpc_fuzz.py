"""Random requests to every endpoint of a running API: whatever the path segments,
query strings, bodies and headers, the answer is never a 5xx, an error is a one-line
JSON {"error"}, and the server keeps serving."""
import hashlib
import http.client
import json
import string
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.transactions import Transfer, sign_tx
from tests.integration.test_rpc import FEE, USER, ServerThread, build_chain, make_api

EXAMPLES = settings(max_examples=200, deadline=None)
VALID_TX = sign_tx(USER, "chain-test", 3, Transfer(bytes(32), 1), FEE).encode()
BLOB = b"a stored blob"
# headers that would make the connection itself wait or fail rather than reach a handler
_FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect"}
HEADER_NAMES = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20).filter(
    lambda name: name.lower() not in _FRAMING)
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4) | st.fixed_dictionaries(
    {"Content-Type": st.sampled_from(["text/plain", "application/json", "application/octet-stream",
                                      "multipart/form-data; boundary=x", "text/plain; charset=bogus"])})
SEGMENTS = (st.text(max_size=80) | st.integers(-2**70, 2**70).map(str)
            | st.binary(max_size=40).map(bytes.hex) | st.sampled_from(["", ".", "..", "%", "0" * 64]))
QUERIES = (st.lists(st.tuples(st.sampled_from(["from", "to", "x", ""]) | st.text(max_size=10),
                              SEGMENTS), max_size=4).map(urllib.parse.urlencode)
           | st.text(string.printable.strip() + " ", max_size=60).map(
               lambda q: urllib.parse.quote(q, safe="=&%+")))


def _mutations(data: bytes):
    """Valid transaction bytes, truncated, extended, or with one byte changed."""
    return st.one_of(
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.binary(min_size=1, max_size=8).map(lambda extra: data + extra),
        st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
            lambda p: data[:p[0]] + bytes([p[1]]) + data[p[0] + 1:]))


TX_BODIES = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b.hex().encode()),
    _mutations(VALID_TX).map(lambda b: b.hex().encode()),
    _mutations(VALID_TX.hex().encode()),
    st.text(max_size=100).map(str.encode),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("rpc-fuzz")
    blobs = BlobStore(home / "blobs")
    blobs.put(BLOB)
    with ChainStore.open(home / "db") as store:
        with ServerThread(make_api(build_chain(store), blobs=blobs)) as running:
            yield running
            # the server survived everything thrown at it
            assert _request(running, "GET", "/status")[0] == 200


def _request(server, method: str, target: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
    host, port = urllib.parse.urlsplit(server.url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        reply = connection.getresponse()
        data = reply.read()
        json_error = (reply.status >= 400 and method != "HEAD"  # a HEAD reply has no body
                      and reply.getheader("Content-Type", "").startswith("application/json"))
        if json_error:
            message = json.loads(data)["error"]
            assert isinstance(message, str) and message and "\n" not in message
        return reply.status, data
    finally:
        connection.close()


def _check(server, method: str, target: str, body: bytes | None = None,
           headers: dict | None = None) -> int:
    status, data = _request(server, method, target, body, headers)
    assert status < 500, (method, target, body, headers, data[:300])
    return status


def _path(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


@EXAMPLES
@given(segment=SEGMENTS, query=QUERIES, headers=HEADERS)
def test_blocks(server, segment, query, headers):
    _check(server, "GET", f"/blocks/{_path(segment)}?{query}", headers=headers)


@EXAMPLES
@given(query=QUERIES, headers=HEADERS)
def test_headers(server, query, headers):
    _check(server, "GET", f"/headers?{query}", headers=headers)


@EXAMPLES
@given(segment=SEGMENTS, query=QUERIES, headers=HEADERS)
def test_accounts(server, segment, query, headers):
    _check(server, "GET", f"/accounts/{_path(segment)}?{query}", headers=headers)


@EXAMPLES
@given(segment=SEGMENTS, value=st.text(max_size=30) | st.sampled_from(["0", "1"]), headers=HEADERS)
def test_accounts_with_proof(server, segment, value, headers):
    address = segment if len(segment) == 64 else "ab" * 32
    _check(server, "GET", f"/accounts/{_path(address)}?proof={_path(value)}", headers=headers)


@EXAMPLES
@given(segment=SEGMENTS | st.integers(0, 5).map(str), query=QUERIES, headers=HEADERS)
def test_rounds(server, segment, query, headers):
    _check(server, "GET", f"/rounds/{_path(segment)}?{query}", headers=headers)


@EXAMPLES
@given(segment=SEGMENTS | st.just(hashlib.sha256(BLOB).hexdigest()), query=QUERIES,
       headers=HEADERS)
def test_blobs(server, segment, query, headers):
    _check(server, "GET", f"/blobs/{_path(segment)}?{query}", headers=headers)


@EXAMPLES
@given(segment=SEGMENTS, query=QUERIES, headers=HEADERS)
def test_tx_status(server, segment, query, headers):
    _check(server, "GET", f"/txs/{_path(segment)}?{query}", headers=headers)


@EXAMPLES
@given(body=TX_BODIES, query=QUERIES, headers=HEADERS)
def test_post_txs(server, body, query, headers):
    _check(server, "POST", f"/txs?{query}", body=body, headers=headers)


@EXAMPLES
@given(path=st.sampled_from(["/", "/status", "/metrics", "/snapshots", "/committee_changes"]), query=QUERIES, headers=HEADERS,
       body=st.none() | st.binary(max_size=100))
def test_fixed_endpoints(server, path, query, headers, body):
    assert _check(server, "GET", f"{path}?{query}", body=body, headers=headers) == 200


@EXAMPLES
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       segments=st.lists(SEGMENTS, max_size=4), body=st.none() | st.binary(max_size=100))
def test_any_method_and_path(server, method, segments, body):
    _check(server, method, "/" + "/".join(_path(s) for s in segments), body=body)
