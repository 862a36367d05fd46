"""Peer frames: one tagged union, strict decoding, a size cap checked before decoding."""
import pytest

from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader
from node.types.votes import PREVOTE, VoteBody, sign_vote
from node.types.codec import DecodeError
from node.types.proposal import sign_proposal
from node.types.crypto import SigningKey
from node.types.transactions import Transfer, WorkCommitment, sign_tx
from node.net.wire import (MAX_BLOCKS_PER_MESSAGE, MAX_FRAME_BYTES, PEER_MESSAGE, Blocks,
                       BlockWithCommit, GetBlocks, Hello, HelloAck, Status, TxMessage,
                       decode_message, encode_message, handshake_signature_valid, message_id,
                       sign_handshake)

CHAIN = "test-chain"
KEY = SigningKey(bytes([5]) * 32)
PEER = SigningKey(bytes([6]) * 32)


def block(txs=()) -> Block:
    header = BlockHeader(chain_id=CHAIN, height=1, round=0, time_ms=1_700_000_000_000,
                         prev_hash=bytes(32), last_commit_hash=EMPTY_COMMIT.hash,
                         tx_root=bytes(32), close_hash=bytes(32), state_root=bytes(32), proposer=KEY.public_key)
    return Block(header=header, txs=tuple(txs), last_commit=EMPTY_COMMIT)


MESSAGES = [
    Hello(chain_id=CHAIN, genesis_hash=bytes(32), public_key=KEY.public_key,
          listen_address="127.0.0.1:26656", height=3, challenge=bytes([1]) * 32),
    sign_handshake(KEY, CHAIN, bytes([1]) * 32, PEER.public_key),
    sign_proposal(KEY, CHAIN, 1, 0, 0xFFFFFFFF, block()),
    sign_vote(KEY, CHAIN, VoteBody(PREVOTE, 1, 0, bytes(32))),
    TxMessage(sign_tx(KEY, CHAIN, 0, Transfer(to=PEER.public_key, amount=10), 0)),
    Status(height=9, head_hash=bytes([2]) * 32),
    GetBlocks(from_height=1, count=MAX_BLOCKS_PER_MESSAGE),
    Blocks(items=(BlockWithCommit(block(), EMPTY_COMMIT),)),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message):
    frame = encode_message(message)
    assert frame[0] == PEER_MESSAGE.by_cls[type(message)]
    decoded = decode_message(frame)
    assert decoded == message and type(decoded) is type(message)
    assert encode_message(decoded) == frame


def test_an_oversize_frame_is_refused_before_decoding():
    # valid Status bytes padded past the cap: refused by length, not as trailing bytes
    frame = encode_message(MESSAGES[5]) + bytes(MAX_FRAME_BYTES)
    with pytest.raises(DecodeError, match="exceeds the cap"):
        decode_message(frame)


def test_a_frame_at_the_cap_is_decoded():
    frame = bytes([99]) + bytes(MAX_FRAME_BYTES - 1)
    with pytest.raises(DecodeError, match="unknown tag 99"):
        decode_message(frame)


def test_an_oversize_message_cannot_be_encoded():
    big = WorkCommitment(round=0, unit=0, shard=0, start_root=bytes(32),
                         checkpoint_root=bytes(32), checkpoint_count=0, leaves_hash=bytes(32),
                         delta_hash=bytes(32),
                         loss_trace=(0,) * 4096, kernel_version=0, evidence_locks=())
    tx = sign_tx(KEY, CHAIN, 0, big, 0)
    too_many = MAX_FRAME_BYTES // len(tx.encode()) + 1
    with pytest.raises(ValueError, match="exceeds the frame cap"):
        encode_message(Blocks(items=(BlockWithCommit(block([tx] * too_many), EMPTY_COMMIT),)))


def test_get_blocks_count_is_capped_both_ways():
    with pytest.raises(ValueError, match="exceeds the cap"):
        encode_message(GetBlocks(from_height=1, count=MAX_BLOCKS_PER_MESSAGE + 1))
    frame = bytearray(encode_message(GetBlocks(from_height=1, count=1)))
    frame[-2:] = (MAX_BLOCKS_PER_MESSAGE + 1).to_bytes(2, "big")
    with pytest.raises(DecodeError, match="exceeds the cap"):
        decode_message(bytes(frame))


@pytest.mark.parametrize("frame", [b"", b"\x00", b"\x06", bytes([6]) + bytes(39),
                                   bytes([6]) + bytes(41), "text"])
def test_malformed_frames_are_decode_errors(frame):
    with pytest.raises(DecodeError):
        decode_message(frame)


def test_only_peer_messages_encode():
    with pytest.raises(ValueError):
        encode_message(Transfer(to=PEER.public_key, amount=1))


def test_handshake_signature_binds_challenge_keys_and_chain():
    challenge = bytes([4]) * 32
    ack = sign_handshake(KEY, CHAIN, challenge, PEER.public_key)
    assert handshake_signature_valid(ack, CHAIN, challenge, KEY.public_key, PEER.public_key)
    assert not handshake_signature_valid(ack, "other", challenge, KEY.public_key, PEER.public_key)
    assert not handshake_signature_valid(ack, CHAIN, bytes(32), KEY.public_key, PEER.public_key)
    assert not handshake_signature_valid(ack, CHAIN, challenge, PEER.public_key, KEY.public_key)
    assert not handshake_signature_valid(HelloAck(bytes(64)), CHAIN, challenge, KEY.public_key,
                                         PEER.public_key)


def test_a_message_id_is_the_same_for_every_copy():
    vote = MESSAGES[3]
    assert message_id(encode_message(vote)) == message_id(encode_message(decode_message(
        encode_message(vote))))
    assert message_id(encode_message(vote)) != message_id(encode_message(MESSAGES[4]))
