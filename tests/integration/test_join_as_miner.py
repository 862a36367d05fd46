"""The README's "Join a network as a miner" steps with real processes: on a running
devnet, a new home receives coins, bonds with `uponode tx bond`, starts with one
--peer, finds the other peers (at least 2 within 30 s), registers as a miner, is
assigned a unit, has it accepted and is paid for it within 3 rounds."""
import json
import os
import subprocess
import sys
import time

import pytest

from node.types.genesis import load_genesis
from node.uPoW.rounds import RoundSchedule
from tests.integration.cli_helpers import stop, uponode
from tests.integration.test_devnet import ROOT, _free_base_port, _get, _wait, running_devnet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VALIDATORS = 3


def _height(url: str) -> int:
    return (_get(url, "/status") or {}).get("height", -1)


def test_a_new_miner_joins_bonds_and_is_paid_within_three_rounds(tmp_path):
    base = _free_base_port(VALIDATORS + 2)
    with running_devnet(tmp_path / "devnet", "--validators", str(VALIDATORS), base_port=base) as devnet:
        miner: subprocess.Popen | None = None
        try:
            nodes = json.loads((devnet / "devnet.json").read_text())["nodes"]
            first = nodes[0]
            genesis = load_genesis(devnet / "genesis.json")
            schedule = RoundSchedule.from_genesis(genesis)
            bond = genesis.economics.min_miner_bond
            home = tmp_path / "miner"
            assert uponode("init", "--home", str(home), "--genesis", str(devnet / "genesis.json"),
                           timeout=120).returncode == 0
            address = json.loads(uponode("keys", "show", "--home", str(home), "--json", timeout=60).stdout)["public_key"]

            # coins from a validator, then the bond, each waited for and reported included
            sent = uponode("tx", "transfer", "--home", first["home"], "--to", address, "--amount", str(2 * bond),
                           timeout=180)
            assert sent.returncode == 0 and ": ok" in sent.stdout, sent.stderr
            bonded = uponode("tx", "bond", "--home", str(home), "--amount", str(bond), "--rpc", first["url"],
                             timeout=180)
            assert bonded.returncode == 0 and ": ok" in bonded.stdout, bonded.stderr

            listen = f"127.0.0.1:{base + VALIDATORS + 1}"
            url = f"http://{listen}"
            with open(home / "node.log", "ab") as log:
                miner = subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--home", str(home), "--listen",
                                          listen, "--peer", first["url"].removeprefix("http://")],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, NUMBA_NUM_THREADS="1"))
            started = time.monotonic()
            _wait(lambda: len((_get(url, "/status") or {}).get("peers", [])) >= 2, 30,
                  "a second peer within 30 s of starting (peer exchange)")
            print(f"second peer {time.monotonic() - started:.1f} s after start")
            start_round = schedule.round_of(_height(first["url"]) + 1)

            last = start_round + 2
            _wait(lambda: _height(first["url"]) >= schedule.close_height(last), 600, f"round {last} closed")
            paid_rounds = []
            for round_ in range(start_round, last + 1):
                view = _get(first["url"], f"/rounds/{round_}")
                accepted = [u for u in view["units"] if u["miner"] == address and u["status"] == "accepted"]
                paid = sum(r["amount"] for r in view["rewards"] if r["to"] == address and r["reason"] == "units")
                if accepted and paid > 0:
                    paid_rounds.append(round_)
            assert paid_rounds, f"the new miner was not paid for an accepted unit in rounds {start_round}..{last}"
            round_ = paid_rounds[-1]
            status = _get(url, "/status")
            assert status["mining"]["registered"] and status["mining"]["bond"] == bond
            assert status["mining"]["last_reward"]["round"] >= round_
            print(f"joined in round {start_round}, paid for round {round_}")
        finally:
            if miner is not None:
                stop(miner)
