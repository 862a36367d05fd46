"""Verifiable random beacons: per key and input, one pseudorandom output anyone can check.

An ed25519 signature cannot serve as randomness its signer must not choose: the signer
may pick any nonce and so make as many valid signatures of one message as it likes.
This is a verifiable random function in the manner of RFC 9381's ECVRF (edwards25519,
SHA-512, Elligator 2), on the validator's own ed25519 key (secret scalar x, public key
Y = x·B): gamma = x·H(Y, input) is fixed by the key and the input, and a
Chaum–Pedersen proof (c, s) shows log_H(gamma) = log_B(Y) without revealing x.  The
output hashes gamma alone, so whatever nonce the prover picks for its proof, the output
is the same; and no one without x can compute it.  Domains and encodings are this
project's own (not RFC 9381's test vectors).
"""
from __future__ import annotations

import functools
import hashlib

import nacl.bindings as sodium
import nacl.exceptions

PROOF_SIZE = 96  # gamma, c, s: 32 bytes each
OUTPUT_SIZE = 32
ORDER = 2**252 + 27742317777372353535851937790883648493  # L, the order of the base point

_POINT_DOMAIN = b"uponode/vrf-point\x00"
_NONCE_DOMAIN = b"uponode/vrf-nonce\x00"
_CHALLENGE_DOMAIN = b"uponode/vrf-challenge\x00"
_OUTPUT_DOMAIN = b"uponode/vrf-output\x00"


def _scalar(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little") % ORDER


def _le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def _point(public_key: bytes, alpha: bytes) -> bytes:
    """H(Y, alpha): a point of the prime-order subgroup (Elligator 2, cofactor cleared)."""
    return sodium.crypto_core_ed25519_from_uniform(
        hashlib.sha512(_POINT_DOMAIN + public_key + alpha).digest()[:32])


def _challenge(public_key: bytes, h: bytes, gamma: bytes, u: bytes, v: bytes) -> int:
    return _scalar(_CHALLENGE_DOMAIN + public_key + h + gamma + u + v)


def _output(gamma: bytes) -> bytes:
    return hashlib.sha256(_OUTPUT_DOMAIN + gamma).digest()


def prove(seed: bytes, alpha: bytes) -> bytes:
    """The proof for alpha under the ed25519 key with this 32-byte seed."""
    expanded = hashlib.sha512(seed).digest()
    clamped = bytearray(expanded[:32])
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    x = int.from_bytes(clamped, "little") % ORDER  # ed25519's secret scalar (RFC 8032 §5.1.5)
    public_key = sodium.crypto_scalarmult_ed25519_base_noclamp(_le(x))
    h = _point(public_key, alpha)
    gamma = sodium.crypto_scalarmult_ed25519_noclamp(_le(x), h)
    k = _scalar(_NONCE_DOMAIN + expanded[32:] + h)  # deterministic, as ed25519's nonce
    c = _challenge(public_key, h, gamma, sodium.crypto_scalarmult_ed25519_base_noclamp(_le(k)),
                   sodium.crypto_scalarmult_ed25519_noclamp(_le(k), h))
    return gamma + _le(c) + _le((k + c * x) % ORDER)


@functools.lru_cache(maxsize=4096)
def verified_output(public_key: bytes, alpha: bytes, proof: bytes) -> bytes | None:
    """The output proven by proof for (public_key, alpha), or None if the proof does not
    verify; never raises on bad input.  Cached: a node checks one precommit's beacon when
    the vote arrives and again in the commits that carry it."""
    if len(public_key) != 32 or len(proof) != PROOF_SIZE:
        return None
    gamma, c, s = proof[:32], int.from_bytes(proof[32:64], "little"), int.from_bytes(proof[64:], "little")
    if c >= ORDER or s >= ORDER or not (sodium.crypto_core_ed25519_is_valid_point(gamma)
                                        and sodium.crypto_core_ed25519_is_valid_point(public_key)):
        return None
    try:
        h = _point(public_key, alpha)
        u = sodium.crypto_core_ed25519_sub(sodium.crypto_scalarmult_ed25519_base_noclamp(_le(s)),
                                           sodium.crypto_scalarmult_ed25519_noclamp(_le(c), public_key))
        v = sodium.crypto_core_ed25519_sub(sodium.crypto_scalarmult_ed25519_noclamp(_le(s), h),
                                           sodium.crypto_scalarmult_ed25519_noclamp(_le(c), gamma))
    except nacl.exceptions.RuntimeError:
        return None  # a zero scalar (c or s), which no honest proof has but with negligible odds
    return _output(gamma) if _challenge(public_key, h, gamma, u, v) == c else None
