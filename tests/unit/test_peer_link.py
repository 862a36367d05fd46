"""The frame decoder's bound on large frames waiting for its thread, all peers together."""
import asyncio

import pytest

from node.net.peer_link import DECODE_INLINE_BYTES, Disconnect, FrameDecoder
from node.net.wire import PEER_MESSAGE
from node.types.proposal import Proposal

pytestmark = pytest.mark.asyncio

PROPOSAL_TAG = next(tag for tag, cls in PEER_MESSAGE.by_tag.items() if cls is Proposal)
LARGE = bytes([PROPOSAL_TAG]) + b"\xff" * (DECODE_INLINE_BYTES + 1)  # over the inline size; undecodable


async def _verdict(decoder: FrameDecoder, frame: bytes) -> Disconnect:
    with pytest.raises(Disconnect) as info:
        await decoder.decode(frame, ban=b"peer")
    return info.value


async def test_a_large_frame_beyond_the_waiting_budget_drops_its_peer_without_a_ban():
    decoder = FrameDecoder(max_waiting_bytes=len(LARGE) + len(LARGE) // 2)
    try:
        first, second = await asyncio.gather(_verdict(decoder, LARGE), _verdict(decoder, LARGE))
        assert "undecodable" in str(first) and first.ban == b"peer"  # decoded: it was garbage
        assert str(second).startswith("busy:") and second.ban is None
        assert decoder.waiting_bytes == 0
        # the budget is free again: the next large frame is decoded
        assert "undecodable" in str(await _verdict(decoder, LARGE))
    finally:
        await decoder.close()


async def test_small_frames_never_wait_for_the_thread():
    decoder = FrameDecoder(max_waiting_bytes=0)
    try:
        verdict = await _verdict(decoder, bytes([PROPOSAL_TAG]) + b"\xff" * 100)
        assert "undecodable" in str(verdict)
    finally:
        await decoder.close()
