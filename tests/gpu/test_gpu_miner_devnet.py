"""A GPU miner among CPU nodes: on a real devnet one validator is restarted as
`uponode start --gpu`; its units, trained on the CUDA kernels, are audited bit for
bit by CPU nodes, accepted and paid, and every node agrees on the round's model root
(the GPU node computes its round closes on the GPU too)."""
import json
import pathlib
import subprocess
import sys

import pytest
from numba import cuda

from node.types.genesis import load_genesis
from node.uPoW.rounds import RoundSchedule
from tests.integration.test_devnet import ROOT, _get, _wait
from tests.integration.test_mining_devnet import _stop, mining_devnet  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.gpu, pytest.mark.integration, pytest.mark.slow,
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU (numba.cuda.is_available() is false)"),
]


def test_units_mined_on_the_gpu_are_audited_on_the_cpu_and_accepted(mining_devnet):  # noqa: F811
    state = json.loads((mining_devnet / "devnet.json").read_text())
    validators = [n for n in state["nodes"] if n["url"]]
    urls = [n["url"] for n in validators]
    gpu_node = validators[3]
    schedule = RoundSchedule.from_genesis(load_genesis(mining_devnet / "genesis.json"))
    _stop(gpu_node["pid"])
    _wait(lambda: not pathlib.Path(f"/proc/{gpu_node['pid']}").exists(), 30, "node-3 to stop")
    log_path = pathlib.Path(gpu_node["home"]) / "node.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--gpu", "--home",
                                    gpu_node["home"]], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        restarted = _wait(lambda: (_get(urls[0], "/status") or {}).get("height"), 30, "a height")
        first_round = schedule.round_of(restarted) + 1  # the first round it can mine whole

        def accepted_gpu_round():
            height = min((_get(u, "/status") or {}).get("height", -1) for u in urls)
            for r in range(first_round, schedule.round_of(height) if height > 0 else 0):
                view = _get(urls[0], f"/rounds/{r}")
                units = [u for u in view["units"] if u["miner"] == gpu_node["public_key"]]
                if units and all(u["status"] == "accepted" for u in units):
                    return view
            return None

        view = _wait(accepted_gpu_round, 600, "a closed round with node-3's GPU units accepted")
        for unit in (u for u in view["units"] if u["miner"] == gpu_node["public_key"]):
            assert unit["audits"] and all(a["auditor"] != gpu_node["public_key"]
                                          for a in unit["audits"]), unit
        paid = {(r["to"], r["reason"]) for r in view["rewards"]}
        assert (gpu_node["public_key"], "units") in paid
        assert all(_get(u, f"/rounds/{view['round']}") == view for u in urls)
        assert "on the cuda backend" in log_path.read_text(errors="replace")
    finally:
        process.terminate()
        process.wait(timeout=60)
