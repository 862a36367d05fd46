"""Random and mutated genesis bytes never make the loader raise anything but GenesisError."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from node.types.genesis import DEFAULT_GENESIS, GenesisError, parse_genesis

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


SECTIONS = ["model", "training", "outer", "eval", "corpus", "economics", "consensus"]
ENTRY_LISTS = ["validators", "accounts"]
HEX_KEYS = st.binary(min_size=32, max_size=32).map(bytes.hex)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SECTIONS), st.data())
def test_field_replaced_by_any_json(section, data):
    raw = json.loads(DEVNET_BYTES)
    key = data.draw(st.sampled_from(sorted(raw[section])))
    raw[section][key] = data.draw(JSON_VALUES)
    _accepts_or_refuses(json.dumps(raw).encode())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ENTRY_LISTS), st.data())
def test_entry_field_replaced_by_any_json(section, data):
    raw = json.loads(DEVNET_BYTES)
    entry = raw[section][0]
    key = data.draw(st.sampled_from(sorted(entry)))
    entry[key] = data.draw(JSON_VALUES | HEX_KEYS | st.integers(-2**64, 2**64))
    _accepts_or_refuses(json.dumps(raw).encode())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SECTIONS + ENTRY_LISTS + ["chain_id"]), st.data())
def test_section_replaced_by_any_json(section, data):
    raw = json.loads(DEVNET_BYTES)
    raw[section] = data.draw(JSON_VALUES | st.lists(JSON_VALUES, max_size=3))
    _accepts_or_refuses(json.dumps(raw).encode())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "address": HEX_KEYS, "balance": st.integers(0, 2**63), "bond": st.integers(0, 2**63)}),
    max_size=5))
def test_random_accounts(accounts):
    raw = json.loads(DEVNET_BYTES)
    raw["accounts"] = accounts
    _accepts_or_refuses(json.dumps(raw).encode())
