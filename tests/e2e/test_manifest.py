"""Manifests: the shipped ones load, and a bad one is refused with one line naming the
file and the key, by the loader and by the runner's command line (exit 2)."""
import pathlib

import pytest

from tests.e2e.manifest import ManifestError, load_manifest, parse_manifest
from tests.e2e.run import main

MANIFESTS = pathlib.Path(__file__).parent / "manifests"
DEVNET = "[devnet]\nvalidators = 4\n"


def test_the_shipped_manifests_load():
    manifests = {path.stem: load_manifest(path) for path in MANIFESTS.glob("*.toml")}
    assert {"pause", "partition", "cut_proposer", "restart_at_close"} <= set(manifests)
    restart = manifests["restart_at_close"]
    assert restart.devnet.mine and restart.devnet.auditors == 1
    (perturbation,) = restart.perturbations
    assert (perturbation.kind, perturbation.at, perturbation.within_blocks) == ("restart", "round_close", 1)
    assert manifests["partition"].perturbations[0].groups == ((0, 1), (2, 3))


@pytest.mark.parametrize("text, error", [
    ("[[perturbation]]\nkind = \"explode\"\nstart_s = 1\n",
     "perturbation[0].kind: expected one of kill, pause, disconnect, partition, restart, "
     "cut_proposer, got 'explode'"),
    (DEVNET + "[[perturbation]]\nkind = \"pause\"\nnode = 4\nstart_s = 1\nduration_s = 5\n",
     "perturbation[0].node: 4 is out of range 0..3"),
    (DEVNET + "[[perturbation]]\nkind = \"pause\"\nstart_s = 1\nduration_s = 5\n",
     "perturbation[0].node: missing for a pause"),
    (DEVNET + "[[perturbation]]\nkind = \"partition\"\ngroups = [[0, 1], [1, 2, 3]]\n"
              "start_s = 1\nduration_s = 5\n",
     "perturbation[0].groups: every validator 0..3 must be in exactly one group"),
    (DEVNET + "[[perturbation]]\nkind = \"kill\"\nnode = 1\nstart_s = 1\n",
     "perturbation[0].duration_s: missing (a kill needs one)"),
    (DEVNET + "[[perturbation]]\nkind = \"restart\"\nnode = 1\nstart_s = 1\nat = \"noon\"\n",
     "perturbation[0].at: expected round_close or a phase (train, challenge, audit, aggregate), "
     "got 'noon'"),
    (DEVNET + "[[perturbation]]\nkind = \"restart\"\nnode = 1\nstart_s = 1\nwithin_blocks = 2\n",
     "perturbation[0].within_blocks: only with at = \"round_close\""),
    ("[devnet]\nvalidatorz = 4\n[[perturbation]]\nkind = \"restart\"\nnode = 1\nstart_s = 1\n",
     "devnet.validatorz: unknown key (expected one of validators, auditors, mine, transfers_per_s, "
     "block_interval_ms, round_blocks, commit_blocks, retention_rounds, max_stall_s, settle_s)"),
    ("[devnet]\nround_blocks = 10\ncommit_blocks = 8\n", "devnet.commit_blocks: 8 leaves no audit "
                                                         "phase in devnet.round_blocks 10"),
    (DEVNET, "perturbation: expected one or more [[perturbation]] tables"),
    ("[devnet\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)"),
])
def test_a_bad_manifest_is_one_line_naming_the_key(text, error):
    with pytest.raises(ManifestError) as raised:
        parse_manifest(text, "bad")
    assert str(raised.value) == error


def test_the_runner_refuses_a_bad_manifest_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(DEVNET + "[[perturbation]]\nkind = \"pause\"\nnode = 9\nstart_s = 1\nduration_s = 5\n")
    assert main([str(path), "--dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"e2e: error: {path}: perturbation[0].node: 9 is out of range 0..3\n"
    assert not (tmp_path / "run").exists()  # refused before anything was laid out
