"""POST /fraud_proofs' body (a length-prefixed fraud proof, then its start checkpoint):
the decoder either reads a body back exactly as it was framed or raises DecodeError,
whatever the bytes; and the running endpoint answers anything with a 4xx one-line JSON
error or a 200, never a 5xx, handing the node only what decoded."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.net.rpc_client import FRAUD_PROOFS_PATH, decode_fraud_proof_upload, encode_fraud_proof_upload
from node.storage.chainstore import ChainStore
from node.types.codec import DecodeError
from node.types.crypto import sha256
from node.types.transactions import FraudProof, Transfer, sign_tx
from tests.fuzz.test_rpc_fuzz import HEADERS, QUERIES, _check, _mutations
from tests.integration.test_rpc import FEE, USER, ServerThread, build_chain, make_api

EXAMPLES = settings(max_examples=300, deadline=None)
MAX_TX_BYTES = 65_536
START = b"a checkpoint"
PROOF = sign_tx(USER, "chain-test", 3, FraudProof(0, bytes(32), 0, 1, sha256(START), (sha256(b"a"),),
                                                   sha256(b"b"), (), sha256(b"c")), FEE)
VALID = encode_fraud_proof_upload(PROOF, START)
BODIES = st.one_of(
    st.binary(max_size=400),
    _mutations(VALID),
    st.binary(max_size=8).map(lambda b: len(PROOF.encode()).to_bytes(4, "big") + PROOF.encode() + b),
    st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big") + PROOF.encode() + START),
    st.binary(max_size=64).map(lambda b: encode_fraud_proof_upload(
        sign_tx(USER, "chain-test", 3, Transfer(bytes(32), 1), FEE), b)),
)


@EXAMPLES
@given(body=BODIES)
def test_the_decoder_reads_a_body_back_as_framed_or_refuses_it(body):
    try:
        tx, start = decode_fraud_proof_upload(body, MAX_TX_BYTES)
    except DecodeError:
        return
    assert isinstance(tx.body.payload, FraudProof) and start
    assert encode_fraud_proof_upload(tx, start) == body


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    admitted = []

    async def admit(tx, start_blob) -> None:
        admitted.append((tx, start_blob))

    with ChainStore.open(tmp_path_factory.mktemp("upload-fuzz") / "db") as store:
        with ServerThread(make_api(build_chain(store), admit_fraud_proof=admit)) as running:
            running.admitted = admitted
            yield running
            assert _check(running, "GET", "/status") == 200  # it survived everything


@EXAMPLES
@given(body=BODIES, query=QUERIES, headers=HEADERS)
def test_the_endpoint_never_fails_on_what_a_client_sends(server, body, query, headers):
    before = len(server.admitted)
    status = _check(server, "POST", f"{FRAUD_PROOFS_PATH}?{query}", body=body, headers=headers)
    assert status in (200, 400, 413)
    if status == 200:
        tx, start = server.admitted[before]
        assert encode_fraud_proof_upload(tx, start) == body
    else:
        assert len(server.admitted) == before
