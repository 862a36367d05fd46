"""ed25519 signatures over domain-separated bytes bound to the chain id.

What is signed is  "uponode/" + domain + 0x00 + chain_id + 0x00 + message,
so a signature made for one purpose (a transaction, a vote, a handshake) or one
chain can never be replayed as another.
"""
from __future__ import annotations

import hashlib

import nacl.exceptions
import nacl.signing

PUBKEY_SIZE = 32
SIGNATURE_SIZE = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def signing_bytes(domain: str, chain_id: str, message: bytes) -> bytes:
    if "\x00" in domain or "\x00" in chain_id:
        raise ValueError("domain and chain id must not contain NUL")
    return b"uponode/" + domain.encode() + b"\x00" + chain_id.encode() + b"\x00" + message


class SigningKey:
    """An ed25519 private key (its 32-byte seed) with its public key."""

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.seed = seed
        self.public_key: bytes = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, domain: str, chain_id: str, message: bytes) -> bytes:
        return self._key.sign(signing_bytes(domain, chain_id, message)).signature


def verify(public_key: bytes, signature: bytes, domain: str, chain_id: str, message: bytes) -> bool:
    """True if signature is public_key's over (domain, chain_id, message); never raises on bad input."""
    if len(public_key) != PUBKEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(signing_bytes(domain, chain_id, message), signature)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
