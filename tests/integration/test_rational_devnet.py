"""Rational adversaries on a real devnet (`scripts/devnet.py up --validators 4
--auditors 1`, real processes over 127.0.0.1), checked through the public HTTP API.

A miner whose attested delta vanishes cannot stall the close: the committee claims it
withheld, the round closes without the unit, and the miner is slashed and unpaid.  A
miner that poisons every unit as far as the bounds let it cannot stop the training:
the model root stays agreed and finite, and the eval loss keeps falling."""
import json
import math
import os
import pathlib
import subprocess
import sys
import threading

import pytest

from node.types.genesis import load_genesis
from node.uPoW.rounds import RoundSchedule
from tests.integration.cli_helpers import uponode
from tests.integration.test_devnet import ROOT, _get, _wait
from tests.integration.test_mining_devnet import _stop, mining_devnet  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _min_height(urls: list[str]) -> int:
    return min((_get(u, "/status") or {}).get("height", -1) for u in urls)


class Vanisher(threading.Thread):
    """Deletes one blob from every node's home, again and again until stopped: every copy
    of it is gone, however often a node fetches it back from another."""

    def __init__(self, homes: list[pathlib.Path], digest_hex: str):
        super().__init__(daemon=True)
        self.paths = [home / "blobs" / digest_hex[:2] / digest_hex for home in homes]
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            for path in self.paths:
                path.unlink(missing_ok=True)


def test_a_delta_that_vanishes_after_its_attestation_is_slashed_and_the_chain_goes_on(mining_devnet):  # noqa: F811
    state = json.loads((mining_devnet / "devnet.json").read_text())
    urls = [n["url"] for n in state["nodes"] if n["url"]]
    homes = [pathlib.Path(n["home"]) for n in state["nodes"]]
    # node-1: a miner of one unit (the fixture's node-0 takes two), whose round outcome is its unit's
    miner = [n for n in state["nodes"] if n["url"]][1]["public_key"]
    genesis = load_genesis(mining_devnet / "genesis.json")
    schedule = RoundSchedule.from_genesis(genesis)
    last = genesis.training.segments - 1

    def attested_unit():
        """The first round's unit of miner whose delta its last segment's auditor attested."""
        height = _min_height(urls)
        round_ = schedule.round_of(height) if height > 0 else 0
        view = _get(urls[0], f"/rounds/{round_}") or {"units": []}
        unit = next((u for u in view["units"] if u["miner"] == miner), None)
        if unit and any(a["segment"] == last for a in unit["audits"]) and view["phase"] != "closed":
            return round_, unit
        return None

    round_, unit = _wait(attested_unit, 420, "an attested unit of node-1")
    vanisher = Vanisher(homes, unit["delta_hash"])
    vanisher.start()
    try:
        close = schedule.close_height(round_)
        # blocks keep finalizing past the close on every node
        _wait(lambda: _min_height(urls) >= close + 3, 180, f"every node past the close at {close}")
    finally:
        vanisher.stopped.set()
        vanisher.join()

    views = [_get(u, f"/rounds/{round_}") for u in urls]
    assert all(v == views[0] for v in views), "the nodes disagree on the round"
    view = views[0]
    outcome = {u["miner"]: u["status"] for u in view["units"]}
    assert outcome[miner] == "slashed"
    others = [status for key, status in outcome.items() if key != miner]
    assert others and all(status == "accepted" for status in others)
    assert (miner, "units") not in {(r["to"], r["reason"]) for r in view["rewards"]}
    assert _get(urls[0], f"/accounts/{miner}")["bond"] == 0


POISONED_ROUNDS = 4
EXTRA_ROUNDS = 3  # at most, when a catch cost the poisoner rounds before its poison reached two closes


def _rebond_if_caught(poisoner: dict, url: str, bond: int) -> None:
    """A draw of the forged checkpoint's segment (about 1 in 20 a round at two choosers)
    proves the fraud and burns the poisoner's bond; bonding again keeps the strategy
    playing, as a rational poisoner with coins would.  The bond goes through the
    poisoner's own node, whose mempool knows the nonces its own transactions hold, and
    is tried again if one of those took its nonce first."""
    for _ in range(3):
        if _get(url, f"/accounts/{poisoner['public_key']}")["bond"] >= bond:
            return
        uponode("tx", "bond", "--home", poisoner["home"], "--amount", str(bond), "--rpc", poisoner["url"],
                timeout=180)
    assert _get(url, f"/accounts/{poisoner['public_key']}")["bond"] >= bond, "the caught poisoner could not bond again"


def test_a_poisoning_miner_leaves_the_model_agreed_finite_and_learning(mining_devnet):  # noqa: F811
    state = json.loads((mining_devnet / "devnet.json").read_text())
    validators = [n for n in state["nodes"] if n["url"]]
    urls = [n["url"] for n in validators]
    poisoner = validators[3]
    genesis = load_genesis(mining_devnet / "genesis.json")
    schedule = RoundSchedule.from_genesis(genesis)
    # node-3 comes back as a poisoner: the same validator, its compute worker forging
    _stop(poisoner["pid"])
    _wait(lambda: not pathlib.Path(f"/proc/{poisoner['pid']}").exists(), 30, "node-3 to stop")
    with open(pathlib.Path(poisoner["home"]) / "node.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.poisoning_miner", "--home", poisoner["home"]],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    honest = urls[:3]
    poisoned = 0
    losses = []
    try:
        # the poisoner commits from the next round on
        first = schedule.round_of(max(_min_height(honest), 1)) + 1
        last = first + POISONED_ROUNDS - 1
        # each round read as it closes: past the retention window its records are forgotten
        for round_ in range(first - 1, last + EXTRA_ROUNDS + 1):
            if round_ > last and poisoned >= 2:
                break
            _wait(lambda: _min_height(honest) >= schedule.close_height(round_), 900,
                  f"round {round_} closed on every honest node")
            views = [_get(u, f"/rounds/{round_}") for u in honest]
            roots = {v["model_root"] for v in views}
            assert len(roots) == 1 and None not in roots, f"round {round_}: model roots {roots}"
            view = views[0]
            loss = view["eval_loss"]
            assert loss is not None and math.isfinite(loss), f"round {round_}: eval loss {loss}"
            losses.append(loss)
            poisoned += round_ >= first and any(u["miner"] == poisoner["public_key"] and u["status"] == "accepted"
                                                for u in view["units"])
            _rebond_if_caught(poisoner, honest[0], genesis.economics.min_miner_bond)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert poisoned >= 2, "the poison never reached two closes: the test played nothing"
    assert losses[-1] < losses[0], f"the eval loss did not fall under poison: {losses}"
