"""Every encoded type round-trips, and no bytes make a decoder raise anything but
DecodeError; whatever decodes re-encodes to the very same bytes."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.types.blocks import Block, BlockHeader, CommitCertificate, RoundClose
from node.types.votes import Vote
from node.types.codec import (DecodeError, FixedBytes, ListOf, Nested, Record, Tagged, Text,
                        UInt, VarBytes)
from node.state.records import AccountRecord, Committee, MinerRecord, Supply
from node.types.transactions import PAYLOAD, SignedTx

TYPES = [SignedTx, BlockHeader, Block, RoundClose, Vote, CommitCertificate, AccountRecord, MinerRecord, Committee,
         Supply]


def values(codec) -> st.SearchStrategy:
    """A strategy for any value the codec can encode (collections kept small)."""
    if isinstance(codec, UInt):
        return st.integers(0, (1 << codec.bits) - 1)
    if isinstance(codec, FixedBytes):
        return st.binary(min_size=codec.size, max_size=codec.size)
    if isinstance(codec, VarBytes):
        return st.binary(max_size=min(codec.max_len, 64))
    if isinstance(codec, Text):
        return st.text(max_size=16).filter(lambda s: len(s.encode()) <= codec.raw.max_len)
    if isinstance(codec, ListOf):
        return st.lists(values(codec.item), max_size=min(codec.max_items, 3)).map(tuple)
    if isinstance(codec, Nested):
        return records(codec.cls)
    if isinstance(codec, Tagged):
        return st.one_of([records(cls) for cls in codec.by_cls])
    raise TypeError(codec)


def records(cls: type[Record]) -> st.SearchStrategy:
    return st.deferred(lambda: st.builds(cls, **{name: values(codec) for name, codec in cls.SCHEMA}))


def mutated(data, encoded: bytes) -> bytes:
    """encoded with one to four random flips, cuts or insertions drawn from data."""
    out = bytearray(encoded)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(out) - 1, 0)))
        if action == "flip" and out:
            out[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del out[position:]
        else:
            out[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(out)


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decode_of_encode_is_identity(cls, data):
    value = data.draw(records(cls))
    encoded = value.encode()
    assert cls.decode(encoded) == value
    assert cls.decode(encoded).encode() == encoded


def _decodes_canonically_or_refuses(cls, raw: bytes) -> None:
    try:
        value = cls.decode(raw)
    except DecodeError:
        return
    assert value.encode() == raw


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=400))
def test_random_bytes(cls, raw):
    _decodes_canonically_or_refuses(cls, raw)


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_encodings(cls, data):
    _decodes_canonically_or_refuses(cls, mutated(data, data.draw(records(cls)).encode()))


def test_a_length_above_its_cap_is_refused_before_reading():
    # a transfer whose tag claims a work commitment with a 2^32-1 entry loss trace
    with pytest.raises(DecodeError, match="exceeds the cap"):
        PAYLOAD.decode(bytes([5]) + bytes(8 + 4 + 4 + 32 + 32 + 4 + 32 + 32) + b"\xff\xff\xff\xff")


def test_non_bytes_input_is_a_decode_error():
    with pytest.raises(DecodeError):
        SignedTx.decode("not bytes")
