"""The devnet genesis builder writes a genesis every node accepts, with the keys to run it."""
import json
import subprocess
import sys

import pytest

from genesis.builder import FUNDED_BALANCE, VALIDATOR_POWER, BuildError, build_devnet
from node.types.genesis import load_genesis
from node.storage.home import init_home, read_key_file


def test_four_validators(tmp_path):
    path = build_devnet(4, tmp_path / "net", funded_accounts=2)
    assert path == tmp_path / "net" / "genesis.json"
    genesis = load_genesis(path)
    base = load_genesis()
    keys = tmp_path / "net" / "keys"
    validator_keys = [read_key_file(keys / f"validator-{i}.json") for i in range(4)]
    account_keys = [read_key_file(keys / f"account-{i}.json") for i in range(2)]
    assert [v.pub_key for v in genesis.validators] == [k.public_key for k in validator_keys]
    assert all(v.power == VALIDATOR_POWER for v in genesis.validators)
    assert [a.address for a in genesis.accounts] == [
        k.public_key for k in validator_keys + account_keys]
    assert all(a.balance == FUNDED_BALANCE for a in genesis.accounts)
    assert [a.bond for a in genesis.accounts] == [base.economics.min_miner_bond] * 4 + [0, 0]
    assert sorted(p.name for p in keys.iterdir()) == [
        "account-0.json", "account-1.json", *(f"validator-{i}.json" for i in range(4))]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in keys.iterdir())
    # the training parameters are the base's: the golden training hash still holds
    for section in ("model", "training", "outer", "eval", "corpus", "economics"):
        assert getattr(genesis, section) == getattr(base, section)


def test_a_validator_is_bonded_for_each_unit_it_mines(tmp_path):
    genesis = load_genesis(build_devnet(3, tmp_path / "net", units=[2, 1, 3]))
    bond = genesis.economics.min_miner_bond
    assert [a.bond for a in genesis.accounts] == [2 * bond, bond, 3 * bond]
    for units in ([1, 1], [0, 1, 1], [65, 1, 1]):
        with pytest.raises(BuildError, match="units: one count 1..64 per validator"):
            build_devnet(3, tmp_path / f"bad-{len(units)}-{units[0]}", units=units)


def test_corpus_is_copied_and_homes_keep_the_genesis_hash(tmp_path):
    path = build_devnet(4, tmp_path / "net")
    genesis = load_genesis(path)
    assert genesis.corpus_path() == tmp_path / "net" / "corpus" / "stdlib.txt"
    assert genesis.corpus_path().read_bytes() == load_genesis().corpus_path().read_bytes()
    key = read_key_file(tmp_path / "net" / "keys" / "validator-0.json")
    a = init_home(tmp_path / "a", path, key)
    b = init_home(tmp_path / "b", path)
    assert a.genesis.hash == b.genesis.hash == genesis.hash
    assert a.key.public_key == genesis.validators[0].pub_key


def test_more_validators_than_the_committee_widen_it(tmp_path):
    genesis = load_genesis(build_devnet(7, tmp_path))
    assert len(genesis.validators) == genesis.consensus.committee_size == 7


def test_an_existing_devnet_is_not_overwritten(tmp_path):
    build_devnet(1, tmp_path)
    key_bytes = (tmp_path / "keys" / "validator-0.json").read_bytes()
    with pytest.raises(BuildError, match="already holds"):
        build_devnet(1, tmp_path)
    assert (tmp_path / "keys" / "validator-0.json").read_bytes() == key_bytes


@pytest.mark.parametrize("validators,accounts,message", [
    (0, 0, "validators must be 1..100, got 0"),
    (101, 0, "validators must be 1..100, got 101"),
    (1, -1, "extra accounts must be 0..9999"),
    (100, 9901, "extra accounts must be 0..9900"),
])
def test_bad_counts(tmp_path, validators, accounts, message):
    with pytest.raises(BuildError, match=message):
        build_devnet(validators, tmp_path, accounts)


def _builder(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genesis.builder", *args],
                          capture_output=True, text=True, timeout=60)


def test_command_line(tmp_path):
    proc = _builder("--validators", "2", "--out", str(tmp_path), "--accounts", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "genesis.json")
    assert len(json.loads((tmp_path / "genesis.json").read_text())["accounts"]) == 3


@pytest.mark.parametrize("args,needle", [
    (["--validators", "two", "--out", "x"], "--validators: expected an integer"),
    (["--out", "x"], "--validators"),
    (["--validators", "0", "--out", "x"], "validators must be 1..100"),
])
def test_command_line_errors(tmp_path, args, needle):
    proc = subprocess.run([sys.executable, "-m", "genesis.builder", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
