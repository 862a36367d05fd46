"""The per-type frame cap: any tag byte and any length gets a verdict from the tag and
the length alone, and nothing but DecodeError; decode_message never reads past it."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.types.codec import DecodeError
from node.net.wire import (FRAME_CAPS, MAX_FRAME_BYTES, PEER_MESSAGE, check_frame_size,
                           decode_message)


@settings(max_examples=300, deadline=None)
@given(tag=st.integers(0, 255), length=st.integers(0, MAX_FRAME_BYTES + 16),
       fill=st.integers(0, 255))
def test_any_tag_and_length(tag, length, fill):
    frame = bytes([tag]) + bytes([fill]) * length
    cls = PEER_MESSAGE.by_tag.get(tag)
    try:
        assert check_frame_size(frame) is cls
    except DecodeError:
        assert cls is None or len(frame) > FRAME_CAPS[cls]
    else:
        assert len(frame) <= FRAME_CAPS[cls]


@settings(max_examples=200, deadline=None)
@given(tag=st.sampled_from(sorted(PEER_MESSAGE.by_tag)), extra=st.integers(1, 4096),
       body=st.binary(max_size=64))
def test_an_oversize_frame_is_refused_whatever_it_holds(tag, extra, body):
    cls = PEER_MESSAGE.by_tag[tag]
    size = FRAME_CAPS[cls] + extra
    frame = (bytes([tag]) + body)[:size].ljust(size, b"\x00")
    with pytest.raises(DecodeError, match=f"^{cls.__name__} frame of {size} bytes exceeds the cap"):
        decode_message(frame)
