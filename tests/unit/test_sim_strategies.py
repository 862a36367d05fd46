"""scripts/sim_strategies.py, the expected value of cheating (issue 12), run briefly as a
user runs it: its output's shape, and outcomes that a short run already settles."""
import json
import pathlib
import subprocess
import sys

from node.types.genesis import load_genesis

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENESIS = load_genesis()
ALL_BUT_LAST = GENESIS.training.segments - 1  # the last segment is always challenged
BOND = GENESIS.economics.min_miner_bond
KEYS = {"strategy", "summary", "rounds", "mean_profit_vs_honest", "stderr", "caught_fraction",
        "adversary_mean_profit", "honest_mean_profit", "mean_profit_vs_peer", "peer_stderr", "unit_cost"}


def test_a_short_run_prints_each_strategy_then_all_of_them():
    # recheck 1: every segment a colluding auditor passes is re-checked, so the rule that
    # slashes an auditor whose pass is disproven runs too
    names = ["honest", f"fake-{ALL_BUT_LAST}-withhold", "withhold-delta", f"sybil-fake-{ALL_BUT_LAST}"]
    run = subprocess.run([sys.executable, "scripts/sim_strategies.py", "--rounds", "200", "--recheck", "1",
                          "--jobs", "2", "--strategies", ",".join(names)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["strategy"] for r in lines[:-1]] == names
    final = lines[-1]
    assert final["strategies"] == lines[:-1]
    assert final["rounds"] == 200 and final["machine"]["nproc"] >= 1
    results = {r["strategy"]: r for r in final["strategies"]}
    for r in results.values():
        assert set(r) == KEYS and r["rounds"] == 200
    assert "| withhold-delta |" in run.stderr  # the Markdown table

    honest = results["honest"]
    # mining honestly pays: the unit reward is above its compute cost
    assert honest["honest_mean_profit"] > 0
    assert honest["mean_profit_vs_honest"] == 0 and honest["caught_fraction"] == 0
    # the committee claims every withheld delta: the unit is WITHHELD, the whole bond burned
    delta = results["withhold-delta"]
    assert delta["caught_fraction"] == 1.0
    assert delta["adversary_mean_profit"] < -0.99 * BOND
    # a draw hits a faked segment S - 1 times in S; withholding its data costs the bond
    faker = results[f"fake-{ALL_BUT_LAST}-withhold"]
    assert faker["caught_fraction"] > 0.9
    assert faker["mean_profit_vs_honest"] < -0.8 * BOND
    # honest auditors catch 2/3 of the coalition's fakes, the re-check the rest
    sybil = results[f"sybil-fake-{ALL_BUT_LAST}"]
    assert sybil["caught_fraction"] > 0.9
    assert sybil["mean_profit_vs_honest"] < -BOND
