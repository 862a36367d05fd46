"""Sealing a key's seed with a passphrase, for a key file that is safe to copy.

A sealed key file holds, beside "type" and "public_key" (in the clear, so that the
address shows without the passphrase):

    "kdf": "argon2id", "opslimit": N, "memlimit": BYTES, "salt": 16 bytes hex,
    "nonce": 24 bytes hex, "sealed_seed": 48 bytes hex

The seed is encrypted with XSalsa20-Poly1305 (libsodium's secretbox) under a key that
Argon2id (libsodium's crypto_pwhash, version 1.3) derives from the passphrase with that
salt and those limits, so any program with libsodium can write or read one.  A file's
limits must lie between libsodium's "interactive" and "sensitive" ones: a file cannot
make unlocking take more than a gigabyte, nor leave a stolen copy cheap to guess at.
"""
from __future__ import annotations

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

KDF = "argon2id"
SEALED_FIELDS = ("kdf", "opslimit", "memlimit", "salt", "nonce", "sealed_seed")
SEED_BYTES = 32
# what `uponode init --encrypt` uses: libsodium's "moderate" (about a second, 256 MiB)
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
_OPS = (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE)
_MEM = (nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE)
_HEX_BYTES = {"salt": nacl.pwhash.argon2id.SALTBYTES, "nonce": nacl.secret.SecretBox.NONCE_SIZE,
              "sealed_seed": SEED_BYTES + nacl.secret.SecretBox.MACBYTES}


class KeystoreError(ValueError):
    """A sealed seed that cannot be opened; the message says why, in one line."""


class WrongPassphrase(KeystoreError):
    pass


def seal(seed: bytes, passphrase: bytes) -> dict:
    """The sealed fields for seed under passphrase, with a fresh salt and nonce."""
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, OPSLIMIT, MEMLIMIT))
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    return {"kdf": KDF, "opslimit": OPSLIMIT, "memlimit": MEMLIMIT, "salt": salt.hex(),
            "nonce": nonce.hex(), "sealed_seed": box.encrypt(seed, nonce).ciphertext.hex()}


def check_sealed(record: dict) -> None:
    """KeystoreError unless record's sealed fields have their types and bounds."""
    if record["kdf"] != KDF:
        raise KeystoreError(f'kdf: expected "{KDF}"')
    for name, (low, high) in (("opslimit", _OPS), ("memlimit", _MEM)):
        value = record[name]
        if type(value) is not int or not low <= value <= high:
            raise KeystoreError(f"{name}: expected an integer in {low}..{high}")
    for name, size in _HEX_BYTES.items():
        value = record[name]
        if (not isinstance(value, str) or len(value) != 2 * size
                or any(c not in "0123456789abcdef" for c in value)):
            raise KeystoreError(f"{name}: expected {2 * size} lowercase hex digits")


def unseal(record: dict, passphrase: bytes) -> bytes:
    """The seed in a checked record (check_sealed); WrongPassphrase if it does not open."""
    key = _derive(passphrase, bytes.fromhex(record["salt"]), record["opslimit"], record["memlimit"])
    try:
        return nacl.secret.SecretBox(key).decrypt(bytes.fromhex(record["sealed_seed"]),
                                                  bytes.fromhex(record["nonce"]))
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase("wrong passphrase (or the sealed seed was altered)") from None


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                    opslimit=opslimit, memlimit=memlimit)
