"""JSON views of chain records, as the HTTP API shows them: bytes as hex, records as
objects of their fields, a transaction's kind as a snake_case word."""
from __future__ import annotations

import re
from typing import Any

from node.types.blocks import BlockHeader, CommitCertificate
from node.types.codec import Record
from node.types.transactions import SignedTx

_KIND_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Record):
        return _record_fields(value)
    return value


def _record_fields(record: Record) -> dict:
    return {name: _json_value(getattr(record, name)) for name, _ in record.SCHEMA}


def tx_json(tx: SignedTx) -> dict:
    payload = tx.body.payload
    return {"hash": tx.hash.hex(), "sender": tx.body.sender.hex(), "nonce": tx.body.nonce,
            "fee": tx.body.fee, "kind": _KIND_WORD.sub("_", type(payload).__name__).lower(),
            "fields": _record_fields(payload)}


def header_json(header: BlockHeader) -> dict:
    return {"hash": header.hash.hex(), **_record_fields(header)}


def commit_json(commit: CommitCertificate) -> dict:
    return {"height": commit.height, "round": commit.round, "block_hash": commit.block_hash.hex(),
            "signers": [s.validator.hex() for s in commit.signatures]}
