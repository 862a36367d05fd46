"""The sealed key file through the CLI (node.cli.main, as a shell runs it): `uponode init
--encrypt` seals the seed, the address shows without the passphrase, the key opens with
it from a file or a prompt, a wrong one is one line and exit 2, and a sealed file that
another program wrote with libsodium opens too."""
import json
import os
import sys

import nacl.bindings
import nacl.pwhash
import pytest

from node.cli import main
from node.storage.home import KEY_FILE, load_home, read_key_file
from node.storage.keystore import SEALED_FIELDS
from node.types.crypto import SigningKey

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "passphrase.txt"
    path.write_bytes(PASSPHRASE + b"\n")
    return path


def _one_line_error(capsys, needle: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_a_sealed_key_round_trips_and_shows_its_address_without_the_passphrase(tmp_path, secret, capsys):
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--encrypt", "--passphrase-file", str(secret)]) == 0
    public_key = capsys.readouterr().out.split("public_key: ")[1].split()[0]
    record = json.loads((home / KEY_FILE).read_text())
    assert "seed" not in record and set(SEALED_FIELDS) <= set(record) and record["public_key"] == public_key
    assert os.stat(home / KEY_FILE).st_mode & 0o777 == 0o600
    assert main(["keys", "show", "--home", str(home)]) == 0  # no passphrase asked
    assert capsys.readouterr().out.strip() == public_key
    assert main(["keys", "show", "--home", str(home), "--check", "--passphrase-file", str(secret)]) == 0
    assert capsys.readouterr().out.strip() == public_key
    assert load_home(home, lambda: PASSPHRASE).key.public_key.hex() == public_key


def test_a_wrong_passphrase_is_one_line_and_exit_2(tmp_path, secret, capsys):
    home = tmp_path / "home"
    main(["init", "--home", str(home), "--encrypt", "--passphrase-file", str(secret)])
    wrong = tmp_path / "wrong.txt"
    wrong.write_bytes(b"incorrect horse\n")
    capsys.readouterr()
    assert main(["keys", "show", "--home", str(home), "--check", "--passphrase-file", str(wrong)]) == 2
    _one_line_error(capsys, "wrong passphrase")
    assert main(["tx", "transfer", "--home", str(home), "--to", "ab" * 32, "--amount", "1",
                 "--passphrase-file", str(wrong)]) == 2
    _one_line_error(capsys, "wrong passphrase")


def test_a_sealed_key_without_a_passphrase_source_is_refused_before_anything_starts(tmp_path, secret, capsys,
                                                                                       monkeypatch):
    home = tmp_path / "home"
    main(["init", "--home", str(home), "--encrypt", "--passphrase-file", str(secret)])
    capsys.readouterr()
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["start", "--home", str(home)]) == 2
    _one_line_error(capsys, "a passphrase is needed: give --passphrase-file FILE")
    assert not any((home / "data").iterdir())  # no store was opened


def test_the_prompt_asks_twice_when_sealing_and_refuses_two_different_answers(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    answers = iter(["first", "second"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert main(["init", "--home", str(tmp_path / "home"), "--encrypt"]) == 2
    _one_line_error(capsys, "the two passphrases differ; nothing was written")
    assert not (tmp_path / "home").exists()
    answers = iter(["same", "same", "same"])
    assert main(["init", "--home", str(tmp_path / "home"), "--encrypt"]) == 0
    assert read_key_file(tmp_path / "home" / KEY_FILE, lambda: b"same")
    assert main(["keys", "show", "--home", str(tmp_path / "home"), "--check"]) == 0  # the third answer


def test_a_sealed_key_file_written_by_another_program_opens(tmp_path, secret, capsys):
    """Sealed with libsodium's own calls, as the format says, at the interactive limits."""
    key = SigningKey.generate()
    salt, nonce = os.urandom(16), os.urandom(24)
    ops, mem = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
    box_key = nacl.bindings.crypto_pwhash_alg(32, PASSPHRASE, salt, ops, mem,
                                              nacl.bindings.crypto_pwhash_ALG_ARGON2ID13)
    sealed = nacl.bindings.crypto_secretbox(key.seed, nonce, box_key)
    home = tmp_path / "home"
    home.mkdir()
    (home / KEY_FILE).write_text(json.dumps({
        "public_key": key.public_key.hex(), "type": "ed25519", "kdf": "argon2id", "opslimit": ops,
        "memlimit": mem, "salt": salt.hex(), "nonce": nonce.hex(), "sealed_seed": sealed.hex()}))
    os.chmod(home / KEY_FILE, 0o600)
    assert main(["keys", "show", "--home", str(home), "--check", "--passphrase-file", str(secret)]) == 0
    assert capsys.readouterr().out.strip() == key.public_key.hex()


@pytest.mark.parametrize("field,value,message", [
    ("memlimit", 4 << 30, "memlimit: expected an integer in 67108864..1073741824"),
    ("memlimit", 8192, "memlimit: expected an integer in 67108864..1073741824"),  # cheap to guess at
    ("opslimit", 1, "opslimit: expected an integer in 2..4"),
    ("kdf", "scrypt", 'kdf: expected "argon2id"'),
    ("nonce", "00", "nonce: expected 48 lowercase hex digits"),
])
def test_a_sealed_file_out_of_bounds_is_named_in_one_line(tmp_path, secret, capsys, field, value, message):
    home = tmp_path / "home"
    main(["init", "--home", str(home), "--encrypt", "--passphrase-file", str(secret)])
    record = json.loads((home / KEY_FILE).read_text())
    record[field] = value
    (home / KEY_FILE).write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["keys", "show", "--home", str(home)]) == 2
    _one_line_error(capsys, message)


def test_a_passphrase_file_needs_encrypt_and_a_first_line(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\nsecond line\n")
    assert main(["init", "--home", str(tmp_path / "a"), "--passphrase-file", str(empty)]) == 2
    _one_line_error(capsys, "--passphrase-file seals the key only with --encrypt")
    assert main(["init", "--home", str(tmp_path / "a"), "--encrypt", "--passphrase-file", str(empty)]) == 2
    _one_line_error(capsys, "its first line is empty")
