"""Reading one field of a genesis file: the error that names it, and the checks of
objects, integers, arrays and public keys that every section shares."""
from __future__ import annotations

import json
from typing import Any

import nacl.bindings


class GenesisError(ValueError):
    """A genesis file that cannot be used; the message names the bad field."""


def check_keys(obj: Any, where: str, expected: list[str]) -> None:
    if not isinstance(obj, dict):
        raise GenesisError(f"{where or 'genesis'}: expected a JSON object")
    for key in obj:
        if key not in expected:
            # an unknown key can hold any character; JSON quoting keeps the error on one line
            shown = key if key.isidentifier() else json.dumps(key)
            name = f"{where}.{shown}" if where else shown
            raise GenesisError(f"{name}: unknown key")
    for key in expected:
        if key not in obj:
            name = f"{where}.{key}" if where else key
            raise GenesisError(f"{name}: missing")


def read_int(name: str, value: Any, lo: int, hi: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenesisError(f"{name}: expected an integer, got {json.dumps(value)}")
    if value < lo or (hi is not None and value > hi):
        raise GenesisError(f"{name}: {value} is out of range [{lo}, {hi}]")
    return value


def is_valid_public_key(key: bytes) -> bool:
    """True for the canonical encoding of an ed25519 point of prime order.

    libsodium's check refuses what a bare length check lets through: points off
    the curve, non-canonical encodings, and small-order points such as all zeros,
    for which a signature can verify without the private key.
    """
    return len(key) == 32 and bool(nacl.bindings.crypto_core_ed25519_is_valid_point(key))


def read_public_key(name: str, value: Any) -> bytes:
    if (not isinstance(value, str) or len(value) != 64
            or any(c not in "0123456789abcdef" for c in value)):
        raise GenesisError(f"{name}: expected 64 lowercase hex digits")
    key = bytes.fromhex(value)
    if not is_valid_public_key(key):
        raise GenesisError(f"{name}: not a valid ed25519 public key")
    return key


def read_array(raw: Any, name: str, lo: int, hi: int) -> list:
    if not isinstance(raw, list):
        raise GenesisError(f"{name}: expected a JSON array")
    if not lo <= len(raw) <= hi:
        raise GenesisError(f"{name}: expected {lo} to {hi} entries, got {len(raw)}")
    return raw


def check_unique(keys: list[bytes], name: str, key_field: str) -> None:
    first_index: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        if key in first_index:
            raise GenesisError(f"{name}[{i}].{key_field}: duplicate of {name}[{first_index[key]}]")
        first_index[key] = i
