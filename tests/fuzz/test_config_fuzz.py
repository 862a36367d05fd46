"""Random and mutated config.toml text never makes the parser raise anything but ConfigError."""
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from node.storage.config import ConfigError, NodeConfig, parse_config, render_config

DEFAULT_TEXT = render_config(NodeConfig(peers=("127.0.0.1:26601", "[::1]:26602")))
TOML_VALUES = st.recursive(
    st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["127.0.0.1:26600", "[::1]:1", "host:65535", "a:0", ":1", "[x]:2"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _accepts_or_refuses(data: bytes | str) -> None:
    try:
        config = parse_config(data)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert parse_config(render_config(config)) == config


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data):
    _accepts_or_refuses(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('[]{}=",.:\'\n #-_0123456789abcdeflnrstu\\'), max_size=80))
def test_toml_like_text(text):
    _accepts_or_refuses(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(DEFAULT_TEXT) - 1), st.text(min_size=1, max_size=4))
def test_mutated_default_config(position, patch):
    _accepts_or_refuses(DEFAULT_TEXT[:position] + patch + DEFAULT_TEXT[position + len(patch):])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["listen", "peers", "mine", "units", "peer_exchange", "extra"]),
                       TOML_VALUES | st.integers(0, 70), max_size=4))
def test_any_values_for_the_keys(values):
    _accepts_or_refuses("\n".join(f"{key} = {_toml(value)}" for key, value in values.items()))
