"""A node home: the layout init creates, its key file's safety, and config.toml's checks."""
import json
import os
import pathlib

import pytest

from node.cli import main
from node.storage.config import ConfigError, NodeConfig, parse_config, render_config
from node.types.crypto import SigningKey
from node.types.genesis import DEFAULT_GENESIS, GenesisError, load_genesis
from node.storage.home import HomeError, init_home, load_home, read_key_file, write_key_file


def _mode(path: pathlib.Path) -> int:
    return path.stat().st_mode & 0o777


def test_init_creates_the_layout(tmp_path):
    home = init_home(tmp_path / "home", None)
    root = tmp_path / "home"
    for name in ("config.toml", "genesis.json", "node_key.json"):
        assert (root / name).is_file(), name
    assert home.data_dir == root / "data" and home.data_dir.is_dir()
    assert home.blobs_dir == root / "blobs" and home.blobs_dir.is_dir()
    assert (root / "genesis.json").read_bytes() == DEFAULT_GENESIS.read_bytes()
    assert home.genesis.hash == load_genesis().hash
    assert home.genesis.corpus_path() == root / "corpus" / "stdlib.txt"
    assert home.genesis.corpus_path().read_bytes() == load_genesis().corpus_path().read_bytes()
    assert home.config == NodeConfig()
    assert _mode(root / "node_key.json") == 0o600
    assert not list(root.glob(".*.tmp"))


def test_load_home_gives_back_what_init_made(tmp_path):
    made = init_home(tmp_path, None)
    loaded = load_home(tmp_path)
    assert loaded.key.public_key == made.key.public_key
    assert loaded.key.seed == made.key.seed
    assert loaded.genesis == made.genesis
    assert loaded.config == made.config


def test_init_with_a_given_key(tmp_path):
    key = SigningKey.generate()
    assert init_home(tmp_path, None, key).key.public_key == key.public_key


def test_second_init_refuses_and_leaves_the_key_untouched(tmp_path):
    init_home(tmp_path, None)
    key_bytes = (tmp_path / "node_key.json").read_bytes()
    with pytest.raises(HomeError, match="already initialized"):
        init_home(tmp_path, None)
    assert (tmp_path / "node_key.json").read_bytes() == key_bytes


def test_init_refuses_a_home_with_only_a_key(tmp_path):
    write_key_file(tmp_path / "node_key.json", SigningKey.generate())
    key_bytes = (tmp_path / "node_key.json").read_bytes()
    with pytest.raises(HomeError, match="node_key.json exists"):
        init_home(tmp_path, None)
    assert (tmp_path / "node_key.json").read_bytes() == key_bytes
    assert not (tmp_path / "genesis.json").exists()


def test_init_keeps_a_valid_config_and_refuses_a_bad_one(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.toml").write_text('mine = false\n')
    assert init_home(tmp_path / "a", None).config.mine is False
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.toml").write_text('mine = "no"\n')
    with pytest.raises(ConfigError, match="mine"):
        init_home(tmp_path / "b", None)
    assert not (tmp_path / "b" / "node_key.json").exists()


def test_init_validates_the_genesis_first(tmp_path):
    raw = json.loads(DEFAULT_GENESIS.read_text())
    raw["validators"][0]["power"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(GenesisError, match=r"bad.json: validators\[0\].power"):
        init_home(tmp_path / "home", bad)
    assert not (tmp_path / "home").exists()


def test_init_refuses_a_corpus_path_outside_the_genesis_directory(tmp_path):
    raw = json.loads(DEFAULT_GENESIS.read_text())
    (tmp_path / "corpus.txt").write_bytes(load_genesis().corpus_path().read_bytes())
    raw["corpus"]["path"] = "../corpus.txt"
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "genesis.json").write_text(json.dumps(raw))
    with pytest.raises(GenesisError, match=r"corpus.path: \.\./corpus.txt leaves the genesis"):
        init_home(tmp_path / "home", tmp_path / "g" / "genesis.json")


def test_an_absolute_corpus_path_is_not_copied(tmp_path):
    raw = json.loads(DEFAULT_GENESIS.read_text())
    raw["corpus"]["path"] = str(load_genesis().corpus_path())
    (tmp_path / "genesis.json").write_text(json.dumps(raw))
    home = init_home(tmp_path / "home", tmp_path / "genesis.json")
    assert home.genesis.corpus_path() == load_genesis().corpus_path()
    assert not (tmp_path / "home" / "corpus").exists()


def test_init_on_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(HomeError, match="cannot create the home directory"):
        init_home(tmp_path / "file", None)


def test_keys_show_round_trip(tmp_path, capsys):
    home = init_home(tmp_path, None)
    assert main(["keys", "show", "--home", str(tmp_path)]) == 0
    assert capsys.readouterr().out == home.key.public_key.hex() + "\n"
    assert main(["keys", "show", "--home", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"type": "ed25519", "public_key": home.key.public_key.hex(),
                     "address": home.key.public_key.hex()}
    assert home.key.seed.hex() not in json.dumps(shown)


def test_key_file_round_trip(tmp_path):
    key = SigningKey.generate()
    write_key_file(tmp_path / "k.json", key)
    assert read_key_file(tmp_path / "k.json").seed == key.seed
    with pytest.raises(FileExistsError):
        write_key_file(tmp_path / "k.json", SigningKey.generate())
    assert read_key_file(tmp_path / "k.json").seed == key.seed


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_open_to_others_is_refused(tmp_path, mode):
    init_home(tmp_path, None)
    os.chmod(tmp_path / "node_key.json", mode)
    with pytest.raises(HomeError, match=f"mode {mode:04o}.*chmod 600"):
        load_home(tmp_path)


@pytest.mark.parametrize("content,message", [
    (b"{", "not valid JSON"),
    (b"[]", "expected a JSON object"),
    (b'{"type": "ed25519", "public_key": "00"}', "seed: missing"),
    (b'{"type": "ed25519", "public_key": "00", "seed": "00", "x": 1}', '"x": unknown key'),
    (b'{"type": "rsa", "public_key": "00", "seed": "00"}', "type: expected"),
    (b'{"type": "ed25519", "public_key": "00", "seed": "00"}', "seed: expected 64"),
])
def test_a_malformed_key_file_is_named(tmp_path, content, message):
    path = tmp_path / "node_key.json"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(HomeError) as err:
        read_key_file(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_a_key_whose_public_key_does_not_match_its_seed_is_refused(tmp_path):
    init_home(tmp_path, None)
    path = tmp_path / "node_key.json"
    record = json.loads(path.read_text())
    record["public_key"] = SigningKey.generate().public_key.hex()
    path.write_text(json.dumps(record))
    with pytest.raises(HomeError, match="public_key: does not match the seed"):
        load_home(tmp_path)


def test_load_home_names_the_bad_file(tmp_path):
    init_home(tmp_path, None)
    (tmp_path / "config.toml").write_text("listen = 1\n")
    with pytest.raises(ConfigError, match=r"config.toml: listen: expected"):
        load_home(tmp_path)
    (tmp_path / "config.toml").write_text("")
    (tmp_path / "genesis.json").write_text("{}")
    with pytest.raises(GenesisError, match=r"genesis.json: chain_id: missing"):
        load_home(tmp_path)


def test_load_home_of_an_empty_directory(tmp_path):
    with pytest.raises(HomeError, match="no node_key.json; create the home with: uponode init"):
        load_home(tmp_path)


def test_config_defaults_and_round_trip():
    assert parse_config("") == NodeConfig(listen="127.0.0.1:26600", peers=(), mine=True, units=1,
                                          peer_exchange=True)
    config = NodeConfig(listen="0.0.0.0:1", peers=("example.org:65535", "[::1]:26601"), mine=False,
                        units=64, peer_exchange=False)
    assert parse_config(render_config(config)) == config
    assert parse_config(render_config(NodeConfig())) == NodeConfig()


@pytest.mark.parametrize("text,message", [
    ("listen = ", "not valid TOML"),
    ("[[[", "not valid TOML"),
    ("a = " + "[" * 5000, "not valid TOML: nested too deeply"),
    ("a = " + "1" * 5000, "not valid TOML: Exceeds the limit"),
    (b"mine = \xff", "not UTF-8"),
    ("listn = '1.2.3.4:5'", "listn: unknown key"),
    ('"a\\nb" = 1', '"a\\nb": unknown key'),
    ("[node]\nlisten = '1.2.3.4:5'", "node: unknown key"),
    ("listen = '127.0.0.1:0'", "listen: port must be 1..65535"),
    ("listen = '127.0.0.1:65536'", "listen: port must be 1..65535"),
    ("listen = '127.0.0.1:-1'", "listen: port must be 1..65535"),
    ("listen = '127.0.0.1'", "listen: expected HOST:PORT"),
    ("listen = ':26600'", "listen: bad host"),
    ("listen = 'a b:1'", "listen: bad host"),
    ("listen = '::1:26600'", "listen: bad host"),
    ("listen = '[nope]:1'", "listen: bad IPv6 address"),
    ("listen = 26600", "listen: expected a \"HOST:PORT\" string"),
    ("peers = 'a:1'", "peers: expected a list"),
    ("peers = ['a:1', 2]", "peers[1]: expected a \"HOST:PORT\" string"),
    ("peers = ['a:1', 'b:0']", "peers[1]: port must be 1..65535"),
    ("mine = 1", "mine: expected true or false"),
    ("mine = 'true'", "mine: expected true or false"),
    ("peer_exchange = 0", "peer_exchange: expected true or false"),
    ("units = 0", "units: expected an integer 1..64"),
    ("units = 65", "units: expected an integer 1..64"),
    ("units = true", "units: expected an integer 1..64"),
    ("units = 2.0", "units: expected an integer 1..64"),
])
def test_bad_config_names_the_key(text, message):
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
