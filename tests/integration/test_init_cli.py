"""`uponode init` and `uponode keys show` as a user runs them: real processes, outputs, exit codes."""
import json

import pytest

from node.types.genesis import DEFAULT_GENESIS, load_genesis
from tests.integration.cli_helpers import assert_one_line_error, uponode

pytestmark = pytest.mark.integration


def _fields(stdout: str) -> dict:
    return dict(line.split(": ", 1) for line in stdout.splitlines())


def test_init_then_keys_show(tmp_path):
    home = tmp_path / "home"
    init = uponode("init", "--home", str(home))
    assert init.returncode == 0, init.stderr
    printed = _fields(init.stdout)
    assert printed["home"] == str(home.resolve())
    assert printed["genesis_hash"] == load_genesis().hash
    show = uponode("keys", "show", "--home", str(home))
    assert show.returncode == 0, show.stderr
    assert show.stdout == printed["public_key"] + "\n"
    shown = json.loads(uponode("keys", "show", "--home", str(home), "--json").stdout)
    assert shown["public_key"] == shown["address"] == printed["public_key"]
    seed = json.loads((home / "node_key.json").read_text())["seed"]
    assert seed not in init.stdout + show.stdout + json.dumps(shown)


def test_init_twice_is_refused_and_keeps_the_key(tmp_path):
    assert uponode("init", "--home", str(tmp_path)).returncode == 0
    key_bytes = (tmp_path / "node_key.json").read_bytes()
    assert_one_line_error(uponode("init", "--home", str(tmp_path)), "uponode init: error:",
                           "already initialized")
    assert (tmp_path / "node_key.json").read_bytes() == key_bytes


def test_init_with_a_malformed_genesis_names_the_field(tmp_path):
    raw = json.loads(DEFAULT_GENESIS.read_text())
    raw["economics"]["reward_proposer_bps"] = 0
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(raw))
    proc = uponode("init", "--home", str(tmp_path / "home"), "--genesis", str(genesis))
    assert_one_line_error(proc, str(genesis), "economics: reward_units_bps")
    assert not (tmp_path / "home").exists()


def test_init_with_a_missing_genesis(tmp_path):
    proc = uponode("init", "--home", str(tmp_path / "home"), "--genesis", str(tmp_path / "no.json"))
    assert_one_line_error(proc, "no.json: cannot read")


def test_keys_show_on_a_missing_home(tmp_path):
    assert_one_line_error(uponode("keys", "show", "--home", str(tmp_path / "nope")),
                           "no node_key.json", "uponode init --home")


def test_keys_show_refuses_a_key_open_to_others(tmp_path):
    assert uponode("init", "--home", str(tmp_path)).returncode == 0
    (tmp_path / "node_key.json").chmod(0o644)
    assert_one_line_error(uponode("keys", "show", "--home", str(tmp_path)), "chmod 600")


@pytest.mark.parametrize("args,needle", [
    (["init"], "--home"),
    (["keys"], "COMMAND"),
    (["keys", "show"], "--home"),
])
def test_missing_arguments(args, needle):
    assert_one_line_error(uponode(*args), needle)


def test_init_on_a_home_with_a_malformed_config_names_the_key(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('listen = "127.0.0.1:99999"\n')
    assert_one_line_error(uponode("init", "--home", str(home)), "config.toml", "listen", "port")


def test_audit_needs_a_full_node_to_follow(tmp_path):
    assert uponode("init", "--home", str(tmp_path)).returncode == 0
    assert_one_line_error(uponode("audit", "--home", str(tmp_path)), "--peer", "full node")
    assert_one_line_error(uponode("audit", "--home", str(tmp_path), "--peer", "nowhere"),
                          "--peer", "nowhere")
    assert_one_line_error(uponode("audit", "--home", str(tmp_path / "missing"), "--peer",
                                  "127.0.0.1:1"), "uponode init --home")
