"""Mining is training, end to end: `scripts/devnet.py up --validators 4 --auditors 1
--units 2,1,1,1` runs five training rounds with real processes, and every claim is
checked through the public HTTP API: identical model roots, a falling eval loss,
audited units that carry their miner's AdamW moments from round to round, payments
exactly per the genesis split (node-0, taking two units a round, is paid exactly twice
a one-unit miner), and supply conserved to the unit."""
import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.types.genesis import load_genesis
from node.uPoW.model_state import genesis_model
from node.uPoW.rounds import RoundSchedule
from node.uPoW.trainer import Trainer
from tests.integration.test_devnet import ROOT, _get, _wait, running_devnet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUNDS = 5
BPS = 10_000
UNITS = (2, 1, 1, 1)  # node-0 trains twice the steps of the others each round


@pytest.fixture
def mining_devnet(tmp_path):
    with running_devnet(tmp_path / "devnet", "--validators", "4", "--auditors", "1",
                        "--units", ",".join(map(str, UNITS))) as directory:
        yield directory


def _expected_payments(round_view: dict, economics, proposer: str) -> dict:
    accepted = [u for u in round_view["units"] if u["status"] == "accepted"]
    emission = economics.emission_per_round
    expected: dict = {}

    def pay(to: str, reason: str, amount: int) -> None:
        if amount:
            expected[(to, reason)] = expected.get((to, reason), 0) + amount

    if accepted:
        share = emission * economics.reward_units_bps // BPS // len(accepted)
        for unit in accepted:
            pay(unit["miner"], "units", share)
        audits = [(u, a) for u in accepted for a in u["audits"]]
        if audits:
            audit_share = emission * economics.reward_audits_bps // BPS // len(audits)
            for _, audit in audits:
                pay(audit["auditor"], "audits", audit_share)
    pay(proposer, "proposer", emission * economics.reward_proposer_bps // BPS)
    return expected


def test_five_rounds_train_the_model_and_pay_exactly(mining_devnet):
    state = json.loads((mining_devnet / "devnet.json").read_text())
    urls = [n["url"] for n in state["nodes"] if n["url"]]
    genesis = load_genesis(mining_devnet / "genesis.json")
    schedule = RoundSchedule.from_genesis(genesis)
    emitted = 0
    accepted = 0
    fees: dict[int, list[int]] = {}  # each block's transaction fees, read as the rounds close
    auditor_key = next(n["public_key"] for n in state["nodes"] if n["url"] is None)
    audited_by_light_node = 0
    keys = [n["public_key"] for n in state["nodes"] if n["url"]]
    paid_twice = 0
    accepted_steps: dict[tuple[str, int], int] = {}  # AdamW steps of each (miner, unit)'s accepted units
    carried = 0
    for round_ in range(ROUNDS):
        # read as each round closes: past the retention window its records are forgotten
        _wait(lambda: min((_get(u, "/status") or {}).get("height", -1) for u in urls)
              >= schedule.close_height(round_), 900, f"round {round_} closed on every node")
        views = [_get(u, f"/rounds/{round_}") for u in urls]
        roots = {v["model_root"] for v in views}
        assert len(roots) == 1 and None not in roots, f"round {round_}: model roots {roots}"
        view = views[0]
        for unit in view["units"]:
            key = (unit["miner"], unit["unit"])
            if unit["carried"] is not None:  # its moments are its last accepted unit's
                assert unit["carried"]["step"] == accepted_steps[key], (round_, unit)
                carried += 1
            if unit["status"] == "accepted":
                accepted_steps[key] = (unit["carried"] or {"step": 0})["step"] + genesis.training.steps_per_unit
                assert unit["audits"], f"round {round_}: accepted unit without an audit: {unit}"
                audited_by_light_node += sum(a["auditor"] == auditor_key for a in unit["audits"])
                accepted += 1
        _read_fees(urls[0], schedule.close_height(round_), fees)  # before the blocks are pruned
        close = _get(urls[0], f"/blocks/{schedule.close_height(round_)}")
        expected = _expected_payments(view, genesis.economics, close["header"]["proposer"])
        paid = {(r["to"], r["reason"]): r["amount"] for r in view["rewards"]}
        assert paid == expected, f"round {round_}"
        paid_twice += _paid_twice_a_one_unit_miner(view, paid, keys)
        emitted += sum(paid.values())
        final_loss = view["eval_loss"]
    assert audited_by_light_node > 0, "the light-audit node never audited a unit"
    assert paid_twice >= 2, f"node-0's two units were accepted beside a one-unit miner's in {paid_twice} rounds"
    assert accepted >= ROUNDS
    assert carried >= ROUNDS, f"only {carried} units carried their miner's moments"

    # supply: every account's balance and bond add up to the genesis supply plus emission,
    # less the burned share of every fee (nothing else is burned without fraud)
    genesis_total = sum(a.balance + a.bond for a in genesis.accounts)
    height, holdings = _holdings_at_one_height(urls[0], genesis)
    assert height < schedule.close_height(ROUNDS)  # no later round's emission in it
    _read_fees(urls[0], height, fees)
    burned = sum(fee * genesis.economics.fee_burn_bps // BPS for h in range(1, height + 1) for fee in fees[h])
    assert burned > 0
    # rewards only go to genesis accounts here: validators, and the auditor's funded account
    assert holdings == genesis_total + emitted - burned

    # the model learned: its held-out loss after the last round is clearly below genesis's
    trainer = Trainer(genesis)
    genesis_loss = trainer.eval_loss(genesis_model(genesis).params)
    assert final_loss < genesis_loss - 0.5, (genesis_loss, final_loss)
    model = _get(urls[0], "/status")["model"]
    assert model["round"] >= ROUNDS and np.isfinite(model["eval_loss"])
    _check_metrics(urls)
    _check_own_work(urls)


def _paid_twice_a_one_unit_miner(view: dict, paid: dict, keys: list[str]) -> bool:
    """In a round where node-0's units and a one-unit miner's were all accepted, node-0
    (two units) is paid exactly twice that miner; False for a round without both."""
    accepted = collections.Counter(u["miner"] for u in view["units"] if u["status"] == "accepted")
    single = next((key for key, units in zip(keys, UNITS) if units == 1 and accepted[key] == 1), None)
    if accepted[keys[0]] != UNITS[0] or single is None:
        return False
    assert paid[(keys[0], "units")] == 2 * paid[(single, "units")], view["round"]
    return True


def _check_own_work(urls: list[str]) -> None:
    """Each validator's /status tells its own mining (registered, and paid lately) and its
    audits: each unit reported counted once, however many blocks it stayed assigned."""
    statuses = [_get(url, "/status") for url in urls]
    for status, units in zip(statuses, UNITS):
        mining = status["mining"]
        assert mining["enabled"] and mining["registered"] and mining["units"] == units, mining
        assert mining["last_reward"] is not None and mining["last_reward"]["amount"] > 0, mining
        assert mining["last_reward"]["round"] >= ROUNDS - 2, mining
        assert status["auditing"]["done"] <= status["auditing"]["tasks"], status["auditing"]


def _check_metrics(urls: list[str]) -> None:
    """What a Prometheus user reads off the validators after the rounds, through
    Prometheus's own parser: each trained, voted, talked and audited."""
    scraped = []
    for url in urls:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
            scraped.append({s.name + json.dumps(s.labels, sort_keys=True): s.value
                            for f in text_string_to_metric_families(reply.read().decode()) for s in f.samples})
    for sample in scraped:
        assert sample["uponode_units_trained_total{}"] >= ROUNDS
        assert sample["uponode_training_tokens_per_second{}"] > 0
        assert sample['uponode_consensus_step_seconds_count{"step": "precommit"}'] > 0
        assert sample["uponode_block_interval_seconds_count{}"] > 0
        assert sample['uponode_peer_bytes_sent_total{"type": "Vote"}'] > 0
        assert sample['uponode_peer_bytes_received_total{"type": "Proposal"}'] > 0
        assert sample["uponode_database_bytes{}"] > 0 and sample["uponode_blob_bytes{}"] > 0
        assert sample["uponode_model_round{}"] >= ROUNDS
    assert sum(sample["uponode_audits_total{}"] for sample in scraped) > 0


def _read_fees(url: str, upto: int, fees: dict[int, list[int]]) -> None:
    """Add the fees of the blocks up to upto not read yet (pruned past the retention window)."""
    for height in range(len(fees) + 1, upto + 1):
        fees[height] = [tx["fee"] for tx in _get(url, f"/blocks/{height}")["txs"]]


def _holdings_at_one_height(url: str, genesis) -> tuple[int, int]:
    """(height, the genesis accounts' balances and bonds summed), read between two
    blocks: every block burns fees, so the sum moves with the height."""
    for _ in range(20):
        before = _get(url, "/status")["height"]
        infos = [_get(url, f"/accounts/{a.address.hex()}") for a in genesis.accounts]
        if _get(url, "/status")["height"] == before:
            return before, sum(info["balance"] + info["bond"] for info in infos)
    raise AssertionError("no two reads of /status at the same height")


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def test_a_miner_that_fakes_a_checkpoint_is_proven_slashed_and_unpaid(mining_devnet):
    state = json.loads((mining_devnet / "devnet.json").read_text())
    validators = [n for n in state["nodes"] if n["url"]]
    urls = [n["url"] for n in validators]
    cheater = validators[3]
    genesis = load_genesis(mining_devnet / "genesis.json")
    schedule = RoundSchedule.from_genesis(genesis)
    # node-3 comes back as a cheat: the same validator, its compute worker faking
    _stop(cheater["pid"])
    _wait(lambda: not pathlib.Path(f"/proc/{cheater['pid']}").exists(), 30, "node-3 to stop")
    with open(pathlib.Path(cheater["home"]) / "node.log", "ab") as log:
        cheat = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.cheating_miner", "--home",
             cheater["home"]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    try:
        def slashed_round():
            height = min((_get(u, "/status") or {}).get("height", -1) for u in urls)
            for r in range(schedule.round_of(height) if height > 0 else 0):
                view = _get(urls[0], f"/rounds/{r}") or {"units": []}  # None: past the retention window
                units = {u["miner"]: u for u in view["units"]}
                if units.get(cheater["public_key"], {}).get("status") == "slashed":
                    return view
            return None

        view = _wait(slashed_round, 420, "a closed round in which the cheat is slashed")
        unit = next(u for u in view["units"] if u["miner"] == cheater["public_key"])
        assert unit["fraud"]["prover"] != cheater["public_key"]
        # unpaid for its unit (as a validator it may still earn for audits and proposing)
        assert (cheater["public_key"], "units") not in {(r["to"], r["reason"]) for r in view["rewards"]}
        honest = [u for u in view["units"] if u["miner"] != cheater["public_key"]]
        assert honest and all(u["status"] == "accepted" for u in honest)
        paid = {(r["to"], r["reason"]) for r in view["rewards"]}
        assert all((u["miner"], "units") in paid for u in honest)
        # the bond paid for it: at least one slash of fraud_slash_bps
        bond = _get(urls[0], f"/accounts/{cheater['public_key']}")["bond"]
        start_bond = next(a.bond for a in genesis.accounts if a.address.hex() == cheater["public_key"])
        assert bond <= start_bond - start_bond * genesis.economics.fraud_slash_bps // BPS
        # every node agrees on the round's outcome
        assert all(_get(u, f"/rounds/{view['round']}") == view for u in urls)
    finally:
        cheat.terminate()
        cheat.wait(timeout=30)
