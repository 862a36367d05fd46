"""Peer frames: one tagged union, strict decoding, a size cap per message type checked
before decoding."""
import dataclasses

import pytest

from node.types.blocks import EMPTY_COMMIT, Block, BlockHeader
from node.types.votes import PRECOMMIT, PREVOTE, Vote, VoteBody, sign_vote
from node.types.codec import U8, DecodeError, Record
from node.types.proposal import Proposal, sign_proposal
from node.types.crypto import SigningKey
from node.types.transactions import Transfer, WorkCommitment, sign_tx
from node.net.wire import (FRAME_CAPS, MAX_BLOCKS_PER_MESSAGE, MAX_FRAME_BYTES, MAX_TX_BYTES,
                           PEER_MESSAGE, Blocks, BlockWithCommit, GetBlocks, Hello, HelloAck,
                           Status, TxMessage, check_frame_size, decode_message, encode_message,
                           handshake_signature_valid, max_encoded_size, message_id,
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


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_fits_its_types_cap(message):
    frame = encode_message(message)
    assert check_frame_size(frame) is type(message)
    assert len(frame) <= FRAME_CAPS[type(message)]


def test_small_messages_have_small_caps():
    """Derived from their schemas: a vote is a few hundred bytes, not megabytes."""
    assert FRAME_CAPS[Status] == 1 + 8 + 32 and FRAME_CAPS[GetBlocks] == 1 + 8 + 2
    assert FRAME_CAPS[HelloAck] == 1 + 64
    assert FRAME_CAPS[Vote] == 1 + max_encoded_size(Vote) < 300
    assert FRAME_CAPS[Hello] < 500
    assert FRAME_CAPS[TxMessage] <= 1 + MAX_TX_BYTES
    assert FRAME_CAPS[Proposal] == FRAME_CAPS[Blocks] == MAX_FRAME_BYTES


def test_the_largest_vote_is_exactly_at_its_cap():
    # a precommit for a block carries the full-size beacon
    frame = encode_message(sign_vote(KEY, CHAIN, VoteBody(PRECOMMIT, 1, 0, bytes([1]) * 32)))
    assert len(frame) == FRAME_CAPS[Vote]
    assert check_frame_size(frame) is Vote


@pytest.mark.parametrize("cls", list(FRAME_CAPS), ids=lambda c: c.__name__)
def test_a_frame_one_byte_over_its_types_cap_is_refused_unread(cls):
    tag = bytes([PEER_MESSAGE.by_cls[cls]])
    assert check_frame_size(tag + bytes(FRAME_CAPS[cls] - 1)) is cls  # at the cap: let through
    with pytest.raises(DecodeError, match=f"^{cls.__name__} frame of {FRAME_CAPS[cls] + 1} bytes "
                                          f"exceeds the cap of {FRAME_CAPS[cls]}$"):
        check_frame_size(tag + bytes(FRAME_CAPS[cls]))


def test_a_padded_vote_is_refused_before_decoding():
    frame = encode_message(MESSAGES[3]) + bytes(1000)
    with pytest.raises(DecodeError, match="Vote frame of .* exceeds the cap of"):
        decode_message(frame)


@pytest.mark.parametrize("frame, reason", [(b"", "empty frame"), (b"\x00", "unknown tag 0"),
                                           (bytes([99]) + bytes(10), "unknown tag 99"),
                                           ("text", "expected bytes")])
def test_frames_naming_no_type_are_refused(frame, reason):
    with pytest.raises(DecodeError, match=f"^{reason}$"):
        check_frame_size(frame)


def test_max_encoded_size_follows_the_schema():
    @dataclasses.dataclass(frozen=True)
    class Sample(Record):
        kind: int
        SCHEMA = (("kind", U8),)

    assert max_encoded_size(Sample) == 1
    assert max_encoded_size(PEER_MESSAGE) == 1 + max(max_encoded_size(c) for c in FRAME_CAPS)
    with pytest.raises(TypeError, match="no size bound"):
        max_encoded_size(object())
