"""Key files, clear or sealed, from any bytes or any JSON object: a key, or a HomeError
naming the file; never another exception.  The limits drawn are the interactive ones or
out of bounds (a sealed record within bounds costs a key derivation to read)."""
import json
import os
import pathlib
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from node.storage.home import HomeError, read_key_file, read_public_key
from node.storage.keystore import SEALED_FIELDS

_HEX = st.text("0123456789abcdefABCDEF", max_size=100)
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 1 << 40), _HEX, st.lists(st.integers(), max_size=2))
_SEALED_SHAPE = {
    "kdf": st.sampled_from(["argon2id", "scrypt", ""]) | _VALUES,
    "opslimit": st.sampled_from([0, 1, 2, 5]) | _VALUES,
    "memlimit": st.sampled_from([0, 8192, 1 << 26, 4 << 30]) | _VALUES,
    "salt": st.binary(min_size=16, max_size=16).map(bytes.hex) | _HEX,
    "nonce": st.binary(min_size=24, max_size=24).map(bytes.hex) | _HEX,
    "sealed_seed": st.binary(min_size=48, max_size=48).map(bytes.hex) | _HEX,
}
_RECORDS = st.fixed_dictionaries(
    {"type": st.sampled_from(["ed25519", "rsa"]), "public_key": st.binary(min_size=32, max_size=32).map(bytes.hex)},
    optional={**_SEALED_SHAPE, "seed": st.binary(min_size=32, max_size=32).map(bytes.hex) | _VALUES,
              "extra": _VALUES})


def _read(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "node_key.json"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, raw)
        os.close(fd)
        for read in (lambda: read_key_file(path, lambda: b"passphrase"), lambda: read_public_key(path)):
            try:
                read()
            except HomeError as exc:
                assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(record=_RECORDS)
def test_any_key_record_is_a_key_or_a_named_error(record):
    _read(json.dumps(record).encode())


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=300) | st.just(b"[" * 100_000))
def test_any_bytes_are_a_key_or_a_named_error(raw):
    _read(raw)


def test_the_sealed_fields_are_the_ones_fuzzed():
    assert set(_SEALED_SHAPE) == set(SEALED_FIELDS)
