"""scripts/sim_strategies.py, the expected value of cheating (issue 12), run briefly as a
user runs it: its output's shape, and outcomes that a short run already settles."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYS = {"strategy", "summary", "rounds", "mean_profit_vs_honest", "stderr", "caught_fraction",
        "adversary_mean_profit", "honest_mean_profit", "mean_profit_vs_peer", "peer_stderr", "unit_cost"}


def test_a_short_run_prints_each_strategy_then_all_of_them():
    # recheck 1: every segment a colluding auditor passes is re-checked, so the rule that
    # slashes an auditor whose pass is disproven runs too
    names = ["honest", "fake-39-withhold", "withhold-delta", "sybil-fake-39"]
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
    assert delta["adversary_mean_profit"] < -0.99 * 50_000_000
    # a faked segment is drawn 39 times in 40; withholding its data costs the bond
    assert results["fake-39-withhold"]["caught_fraction"] > 0.9
    assert results["fake-39-withhold"]["mean_profit_vs_honest"] < -40_000_000
    # honest auditors catch 2/3 of the coalition's fakes, the re-check the rest
    sybil = results["sybil-fake-39"]
    assert sybil["caught_fraction"] > 0.9
    assert sybil["mean_profit_vs_honest"] < -50_000_000
