"""Random and mutated genesis bytes never make the loader raise anything but GenesisError."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from node.genesis import DEFAULT_GENESIS, GenesisError, parse_genesis

DEVNET_BYTES = DEFAULT_GENESIS.read_bytes()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10)


def _accepts_or_refuses(raw: bytes) -> None:
    try:
        parse_genesis(raw, DEFAULT_GENESIS.parent)
    except GenesisError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(raw):
    _accepts_or_refuses(raw)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(DEVNET_BYTES) - 1), st.binary(min_size=1, max_size=4))
def test_mutated_devnet_bytes(position, patch):
    _accepts_or_refuses(DEVNET_BYTES[:position] + patch + DEVNET_BYTES[position + len(patch):])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["model", "training", "outer", "eval", "corpus"]), st.data())
def test_field_replaced_by_any_json(section, data):
    raw = json.loads(DEVNET_BYTES)
    key = data.draw(st.sampled_from(sorted(raw[section])))
    raw[section][key] = data.draw(JSON_VALUES)
    _accepts_or_refuses(json.dumps(raw).encode())
