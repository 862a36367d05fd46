"""A node's home directory: its config, genesis, key and data.

    config.toml       listen address, peers, mining (node.storage.config)
    genesis.json      a byte-for-byte copy of the chain's genesis file
    corpus/...        the pinned corpus, at the genesis's relative corpus path
    node_key.json     the node's ed25519 key, mode 0600
    data/             the LevelDB database
    blobs/            content-addressed blobs (checkpoints, deltas, weights)

Files are written to a temporary name, fsynced, then hard-linked into place: a
crash never leaves half a file, and an existing file (above all a key) is never
overwritten.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import pathlib
import secrets
import stat
from typing import Callable

from node.storage.config import ConfigError, NodeConfig, parse_config, render_config
from node.storage.keystore import SEALED_FIELDS, KeystoreError, check_sealed, seal, unseal
from node.types.crypto import SigningKey
from node.types.errors import CommandError
from node.types.genesis import DEFAULT_GENESIS, Genesis, GenesisError, parse_genesis

CONFIG_FILE = "config.toml"
GENESIS_FILE = "genesis.json"
KEY_FILE = "node_key.json"
DATA_DIR = "data"
BLOBS_DIR = "blobs"
_KEY_FIELDS = ["type", "public_key"]  # and "seed", or the sealed fields


class HomeError(CommandError):
    """A home, or a file in it, that cannot be used; the message names the file."""


@dataclasses.dataclass(frozen=True)
class NodeHome:
    path: pathlib.Path
    config: NodeConfig
    genesis: Genesis
    key: SigningKey

    @property
    def data_dir(self) -> pathlib.Path:
        return self.path / DATA_DIR

    @property
    def blobs_dir(self) -> pathlib.Path:
        return self.path / BLOBS_DIR


def _fsync_dir(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """Durably create path holding data; FileExistsError if it exists, never a partial file."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL with an explicit mode: the file is never, even briefly, more readable than mode
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)  # unlike rename, link refuses to replace an existing file
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def write_key_file(path: pathlib.Path, key: SigningKey, passphrase: bytes | None = None) -> None:
    """Write key as {"type", "public_key", "seed"} JSON, or with the seed sealed under
    passphrase (node.storage.keystore), mode 0600, never over an existing file."""
    record = {"type": "ed25519", "public_key": key.public_key.hex()}
    record.update({"seed": key.seed.hex()} if passphrase is None else seal(key.seed, passphrase))
    write_new_file(path, (json.dumps(record, indent=2) + "\n").encode(), mode=0o600)


def _hex32(path: pathlib.Path, record: dict, name: str) -> bytes:
    value = record[name]
    if (not isinstance(value, str) or len(value) != 64
            or any(c not in "0123456789abcdef" for c in value)):
        raise HomeError(f"{path}: {name}: expected 64 lowercase hex digits")
    return bytes.fromhex(value)


def _read_key_record(path: pathlib.Path) -> dict:
    """A key file's fields, checked for their form (clear or sealed), refusing a file
    that group or others can read."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            raw = file.read()
    except FileNotFoundError:
        raise HomeError(f"{path}: no such key file") from None
    except OSError as exc:
        raise HomeError(f"{path}: cannot read: {exc.strerror}") from None
    if mode & 0o077:
        raise HomeError(f"{path}: key file is open to group or others (mode "
                        f"{stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise HomeError(f"{path}: not valid JSON") from None
    if not isinstance(record, dict):
        raise HomeError(f"{path}: expected a JSON object")
    sealed = "seed" not in record and any(name in record for name in SEALED_FIELDS)
    fields = _KEY_FIELDS + (list(SEALED_FIELDS) if sealed else ["seed"])
    for name in record:
        if name not in fields:
            raise HomeError(f"{path}: {json.dumps(name)}: unknown key")
    for name in fields:
        if name not in record:
            raise HomeError(f"{path}: {name}: missing")
    if record["type"] != "ed25519":
        raise HomeError(f"{path}: type: expected \"ed25519\"")
    if sealed:
        try:
            check_sealed(record)
        except KeystoreError as exc:
            raise HomeError(f"{path}: {exc}") from None
    return record


def read_public_key(path: pathlib.Path) -> bytes:
    """A key file's public key, without its passphrase if sealed (a clear one is checked
    against its seed)."""
    record = _read_key_record(path)
    return read_key_file(path).public_key if "seed" in record else _hex32(path, record, "public_key")


def read_key_file(path: pathlib.Path, passphrase: Callable[[], bytes] | None = None) -> SigningKey:
    """Load a key file; a sealed one is opened with passphrase(), asked only then."""
    record = _read_key_record(path)
    if "seed" in record:
        seed = _hex32(path, record, "seed")
    elif passphrase is None:
        raise HomeError(f"{path}: the key is sealed with a passphrase: give --passphrase-file FILE, "
                        f"or run in a terminal to be asked")
    else:
        try:
            seed = unseal(record, passphrase())
        except KeystoreError as exc:
            raise HomeError(f"{path}: {exc}") from None
    key = SigningKey(seed)
    if _hex32(path, record, "public_key") != key.public_key:
        raise HomeError(f"{path}: public_key: does not match the seed")
    return key


def _corpus_target(genesis: Genesis, directory: pathlib.Path) -> pathlib.Path | None:
    """Where a copy of the genesis beside directory must hold its corpus (None: nowhere)."""
    relative = pathlib.PurePath(genesis.corpus.path)
    if relative.is_absolute():
        return None  # an absolute path resolves the same from any copy of the genesis
    if ".." in relative.parts:
        raise GenesisError(f"corpus.path: {genesis.corpus.path} leaves the genesis directory, "
                           f"so the genesis cannot be copied with its corpus")
    return directory / relative


def copy_corpus(genesis: Genesis, directory: pathlib.Path) -> None:
    """Put genesis's corpus where a copy of the genesis file in directory will look for it."""
    target = _corpus_target(genesis, directory)
    if target is None or target.resolve() == genesis.corpus_path().resolve():
        return
    source = genesis.corpus_path()
    data = source.read_bytes()
    # checked again: the file may have changed since the genesis was validated
    if hashlib.sha256(data).hexdigest() != genesis.corpus.sha256:
        raise HomeError(f"{source}: no longer matches the genesis's corpus.sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_new_file(target, data)
    except FileExistsError:
        if hashlib.sha256(target.read_bytes()).hexdigest() != genesis.corpus.sha256:
            raise HomeError(f"{target}: exists and is not the genesis's corpus") from None


def _read_genesis(path: pathlib.Path) -> tuple[bytes, Genesis]:
    """The genesis file's bytes and their validation; errors name the file."""
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise GenesisError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return raw_bytes, parse_genesis(raw_bytes, path.resolve().parent)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from None


def init_home(home: pathlib.Path, genesis_path: pathlib.Path | None = None,
              key: SigningKey | None = None, passphrase: bytes | None = None) -> NodeHome:
    """Create a node home: copy the genesis and its corpus, write a config and a key.

    The key is a new one unless given (a devnet hands each node its validator key),
    its seed sealed under passphrase if one is given.
    Refuses a home that already holds a key or a genesis: a key is never replaced.
    A config.toml already there is validated and kept.
    """
    # the bytes validated are the bytes copied, so the home's genesis hash is the file's
    raw_genesis, genesis = _read_genesis(
        pathlib.Path(genesis_path) if genesis_path is not None else DEFAULT_GENESIS)
    for name in (KEY_FILE, GENESIS_FILE):
        if (home / name).exists():
            raise HomeError(f"{home}: already initialized ({name} exists); "
                            f"choose another --home or remove it")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(f"{home}: cannot create the home directory: {exc.strerror}") from None
    config_exists = (home / CONFIG_FILE).exists()
    if config_exists:
        load_config(home / CONFIG_FILE)
    try:
        copy_corpus(genesis, home)
        write_new_file(home / GENESIS_FILE, raw_genesis)
        if not config_exists:
            write_new_file(home / CONFIG_FILE, render_config(NodeConfig()).encode())
        (home / DATA_DIR).mkdir(exist_ok=True)
        (home / BLOBS_DIR).mkdir(exist_ok=True)
        key = key if key is not None else SigningKey.generate()
        write_key_file(home / KEY_FILE, key, passphrase)
    except FileExistsError as exc:
        # another process is initializing the same home
        raise HomeError(f"{exc.filename}: already exists") from None
    except OSError as exc:
        raise HomeError(f"{exc.filename or home}: {exc.strerror}") from None
    return _with_key(home, key)


def load_config(path: pathlib.Path) -> NodeConfig:
    """Read and validate a config.toml; errors name the file and the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def key_path(home: pathlib.Path) -> pathlib.Path:
    """The home's key file, with a hint when the home was never initialized."""
    if not (home / KEY_FILE).exists():
        raise HomeError(f"{home}: no {KEY_FILE}; create the home with: uponode init --home {home}")
    return home / KEY_FILE


def load_home(home: pathlib.Path, passphrase: Callable[[], bytes] | None = None) -> NodeHome:
    """Load and validate a home's config, genesis and key (a sealed key opened with
    passphrase()); errors name the file and field."""
    return _with_key(home, read_key_file(key_path(home), passphrase))


def _with_key(home: pathlib.Path, key: SigningKey) -> NodeHome:
    config = load_config(home / CONFIG_FILE)
    _, genesis = _read_genesis(home / GENESIS_FILE)
    return NodeHome(path=home, config=config, genesis=genesis, key=key)
