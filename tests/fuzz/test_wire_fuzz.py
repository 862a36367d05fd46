"""Peer frames: every message type round-trips, and no bytes make decode_message raise
anything but DecodeError; whatever decodes re-encodes to the very same frame."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.types.codec import DecodeError
from node.net.wire import MAX_FRAME_BYTES, PEER_MESSAGE, UIntUpTo, decode_message, encode_message
from tests.fuzz.test_codec_fuzz import mutated, values

MESSAGE_TYPES = list(PEER_MESSAGE.by_cls)


def field_values(codec) -> st.SearchStrategy:
    if isinstance(codec, UIntUpTo):
        return st.integers(0, codec.maximum)
    return values(codec)


def messages(cls) -> st.SearchStrategy:
    return st.builds(cls, **{name: field_values(codec) for name, codec in cls.SCHEMA})


any_message = st.one_of([messages(cls) for cls in MESSAGE_TYPES])


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(cls, data):
    message = data.draw(messages(cls))
    frame = encode_message(message)
    assert len(frame) <= MAX_FRAME_BYTES
    decoded = decode_message(frame)
    assert decoded == message and type(decoded) is cls
    assert encode_message(decoded) == frame


def _decodes_canonically_or_refuses(frame: bytes) -> None:
    try:
        message = decode_message(frame)
    except DecodeError:
        return
    assert encode_message(message) == frame


@settings(max_examples=500, deadline=None)
@given(frame=st.binary(max_size=600))
def test_random_frames(frame):
    _decodes_canonically_or_refuses(frame)


@settings(max_examples=300, deadline=None)
@given(tag=st.sampled_from(sorted(PEER_MESSAGE.by_tag)), body=st.binary(max_size=600))
def test_random_bodies_behind_a_valid_tag(tag, body):
    _decodes_canonically_or_refuses(bytes([tag]) + body)


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_mutated_frames(data):
    _decodes_canonically_or_refuses(mutated(data, encode_message(data.draw(any_message))))
