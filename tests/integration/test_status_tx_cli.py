"""`uponode status` and `uponode tx transfer|bond|unbond` as real processes against a real API
server: what they print, and one line with exit code 2 for anything wrong."""
import dataclasses
import json
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from node.storage.config import NodeConfig, render_config
from node.types.genesis import DEFAULT_GENESIS, load_genesis
from node.storage.home import copy_corpus, init_home
from node.storage.chainstore import ChainStore
from node.rpc.status import WorkProgress
from node.types.transactions import Bond, RegisterMiner, sign_tx
from tests.integration.cli_helpers import assert_one_line_error, uponode
from tests.integration.test_rpc import (FEE, NODE_STATUS, USER, VALIDATORS, ServerThread, build_chain,
                                        finalize_next, make_api)

pytestmark = pytest.mark.integration
RECIPIENT = VALIDATORS[3].public_key.hex()


def write_genesis(directory: pathlib.Path) -> pathlib.Path:
    """The devnet genesis with the test validators and USER funded, as a file a home can copy."""
    raw = json.loads(DEFAULT_GENESIS.read_bytes())
    raw["chain_id"] = "chain-cli"
    raw["validators"] = [{"pub_key": k.public_key.hex(), "power": 10} for k in VALIDATORS]
    raw["accounts"] = [{"address": USER.public_key.hex(), "balance": 10_000, "bond": 0}]
    raw["consensus"]["committee_size"] = max(raw["consensus"]["committee_size"], len(VALIDATORS))
    directory.mkdir()
    copy_corpus(load_genesis(), directory)
    path = directory / "genesis.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="module")
def genesis_path(tmp_path_factory):
    return write_genesis(tmp_path_factory.mktemp("cli") / "genesis")


@pytest.fixture
def server(tmp_path, genesis_path):
    with ChainStore.open(tmp_path / "db") as store:
        with ServerThread(make_api(build_chain(store, load_genesis(genesis_path)))) as running:
            yield running


@pytest.fixture
def home(tmp_path, genesis_path, server):
    """USER's home, its config listening where the server is, as a node's would."""
    path = tmp_path / "home"
    path.mkdir()
    listen = server.url.removeprefix("http://")
    (path / "config.toml").write_text(render_config(NodeConfig(listen=listen)))
    init_home(path, genesis_path, key=USER)
    return path


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_status_prints_the_fields(server):
    proc = uponode("status", "--rpc", server.url, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    head = server.call(lambda: server.api.chain.head.block_hash.hex())
    root = server.call(lambda: server.api.chain.state.model().root.hex())
    committee = server.call(lambda: server.api.chain.state.committee().members)
    assert {m.pub_key for m in committee} == {k.public_key for k in VALIDATORS}
    # strings as they are, the rest (lists, null) as JSON, the model's fields one per line
    assert lines == ["chain_id: chain-cli", "height: 3", f"head_hash: {head}", "syncing: false",
                     f'peers: [{{"key": "{"cd" * 32}", "address": "10.0.0.2:26600"}}]',
                     "consensus_round: 1", "round: 0", "phase: train", "model.round: 0",
                     f"model.root: {root}", "model.eval_loss: null",
                     "committee: " + json.dumps([{"key": m.pub_key.hex(), "power": 10} for m in committee])]


def test_status_json(server):
    proc = uponode("status", "--rpc", server.url + "/", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["height"] == 3 and status["chain_id"] == "chain-cli"
    assert status["peers"] == [{"key": key, "address": address} for key, address in NODE_STATUS.peers]
    assert status["syncing"] is NODE_STATUS.syncing
    assert status["consensus_round"] == NODE_STATUS.consensus_round


def test_status_connection_refused():
    url = closed_port_url()
    assert_one_line_error(uponode("status", "--rpc", url, timeout=60), "cannot reach", url,
                          "refused")


def test_status_prints_the_servers_error(server):
    assert_one_line_error(uponode("status", "--rpc", server.url + "/nowhere", timeout=60),
                          "HTTP 404", "no such endpoint")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "127.0.0.1:26600", "http://", "http://h:x"])
def test_status_bad_url(url):
    assert_one_line_error(uponode("status", "--rpc", url, timeout=60), "--rpc")


def test_transfer_reaches_the_chain(server, home):
    # no --rpc: the URL comes from the home's listen address
    first = uponode("tx", "transfer", "--home", str(home), "--to", RECIPIENT, "--amount", "7",
                    "--no-wait", timeout=60)
    assert first.returncode == 0, first.stderr
    # the second takes the next nonce after the pending one
    second = uponode("tx", "transfer", "--home", str(home), "--to", RECIPIENT, "--amount", "5",
                     "--fee", "250", "--rpc", server.url, "--no-wait", timeout=60)
    assert second.returncode == 0, second.stderr
    hashes = [bytes.fromhex(p.stdout.strip()) for p in (first, second)]
    api = server.api

    def finalize():
        assert all(h in api.mempool for h in hashes)
        block = finalize_next(api.chain, api.mempool.reap(100))
        api.mempool.remove_committed(api.chain.state)
        return block
    block = server.call(finalize)
    assert [tx.hash for tx in block.txs] == hashes
    assert [tx.body.nonce for tx in block.txs] == [3, 4]
    # the first paid the genesis minimum, the default; the second what --fee said
    assert [tx.body.fee for tx in block.txs] == [api.chain.genesis.economics.min_tx_fee, 250]
    recipient = server.call(lambda: api.chain.state.account(VALIDATORS[3].public_key))
    assert recipient.balance == 12


def test_bond_then_unbond_reach_the_chain(server, home):
    api = server.api
    before = server.call(lambda: api.chain.state.account(USER.public_key))
    fee = server.call(lambda: api.chain.genesis.economics.min_tx_fee)
    for command, amount in (("bond", "300"), ("unbond", "120")):
        proc = uponode("tx", command, "--home", str(home), "--amount", amount, "--no-wait", timeout=60)
        assert proc.returncode == 0, proc.stderr
        tx_hash = bytes.fromhex(proc.stdout.strip())

        def finalize():
            assert tx_hash in api.mempool
            block = finalize_next(api.chain, api.mempool.reap(100))
            api.mempool.remove_committed(api.chain.state)
            return block
        assert [tx.hash for tx in server.call(finalize).txs] == [tx_hash]
    after = server.call(lambda: api.chain.state.account(USER.public_key))
    assert after.bond == before.bond + 180 and after.balance == before.balance - 180 - 2 * fee


@pytest.mark.parametrize("command", ["bond", "unbond"])
def test_bond_and_unbond_need_a_positive_amount(home, command):
    assert_one_line_error(uponode("tx", command, "--home", str(home), "--amount", "0", timeout=60), "--amount")


@pytest.mark.parametrize("args,needle", [
    (["--to", "abc", "--amount", "1"], "--to"),
    (["--to", "zz" * 32, "--amount", "1"], "--to"),
    (["--to", RECIPIENT, "--amount", "0"], "--amount"),
    (["--to", RECIPIENT, "--amount", "-3"], "--amount"),
    (["--to", RECIPIENT, "--amount", "1.5"], "--amount"),
    (["--to", RECIPIENT, "--amount", str(2**64)], "--amount"),
    (["--to", RECIPIENT], "--amount"),
    (["--to", RECIPIENT, "--amount", "1", "--fee", "-1"], "--fee"),
    (["--to", RECIPIENT, "--amount", "1", "--fee", "0.5"], "--fee"),
    (["--to", RECIPIENT, "--amount", "1", "--fee", str(2**64)], "--fee"),
])
def test_transfer_bad_arguments(home, args, needle):
    assert_one_line_error(uponode("tx", "transfer", "--home", str(home), *args, timeout=60), needle)


def test_transfer_without_a_home(tmp_path):
    assert_one_line_error(uponode("tx", "transfer", "--home", str(tmp_path / "none"), "--to",
                                  RECIPIENT, "--amount", "1", timeout=60), "uponode init")


def test_transfer_connection_refused(home):
    url = closed_port_url()
    assert_one_line_error(uponode("tx", "transfer", "--home", str(home), "--to", RECIPIENT,
                                  "--amount", "1", "--rpc", url, timeout=60), "cannot reach", "refused")


def test_transfer_prints_the_servers_error(server, home):
    assert_one_line_error(uponode("tx", "transfer", "--home", str(home), "--to", RECIPIENT,
                                  "--amount", "1", "--rpc", server.url + "/nowhere", timeout=60),
                          "HTTP 404", "no such endpoint")


def test_transfer_to_a_node_of_another_chain(tmp_path, server):
    other = tmp_path / "other"
    init_home(other, None, key=USER)  # the devnet genesis: another chain id
    assert_one_line_error(uponode("tx", "transfer", "--home", str(other), "--to", RECIPIENT,
                                  "--amount", "1", "--rpc", server.url, timeout=60),
                          "chain-cli", "uponode-devnet")


def test_transfer_refused_by_the_node(server, home):
    def fill_the_pool():
        server.api.mempool.max_txs = 0
    server.call(fill_the_pool)
    assert_one_line_error(uponode("tx", "transfer", "--home", str(home), "--to", RECIPIENT,
                                  "--amount", "1", timeout=60), "HTTP 422", "mempool_full")


def start_uponode(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "node.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_pending(server, proc: subprocess.Popen) -> bytes:
    """The hash the waiting command printed, once the server's pool holds it."""
    tx_hash = bytes.fromhex(proc.stdout.readline().strip())
    deadline = time.monotonic() + 60
    while not server.call(lambda: tx_hash in server.api.mempool):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    return tx_hash


def test_transfer_waits_for_its_block_and_prints_the_result(server, home):
    proc = start_uponode("tx", "transfer", "--home", str(home), "--to", RECIPIENT, "--amount", "7")
    try:
        tx_hash = wait_pending(server, proc)
        time.sleep(1)  # a few polls that find it pending
        assert proc.poll() is None
        api = server.api
        server.call(lambda: finalize_next(api.chain, api.mempool.reap(100)))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "included at height 4 (index 0): ok"
    status = uponode("tx", "status", tx_hash.hex(), "--rpc", server.url, "--json", timeout=60)
    assert status.returncode == 0 and json.loads(status.stdout) == {
        "hash": tx_hash.hex(), "status": "included", "height": 4, "index": 0, "result": "ok"}


def test_a_transaction_the_node_drops_fails_with_its_reason(server, home):
    """What a transaction that a proposer's block could not apply comes to: the wait ends
    with exit 1 and the rule's reason code, and `tx status` tells the same later."""
    proc = start_uponode("tx", "unbond", "--home", str(home), "--amount", "5")
    try:
        tx_hash = wait_pending(server, proc)
        server.call(lambda: server.api.mempool.discard(tx_hash, "bond_locked"))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1 and out == ""
    assert err.strip() == f"transaction {tx_hash.hex()} dropped by the node: bond_locked"
    status = uponode("tx", "status", tx_hash.hex().upper(), "--rpc", server.url, timeout=60)
    assert status.returncode == 1 and "dropped by the node: bond_locked" in status.stderr


def test_tx_status_pending_and_unknown(server, home):
    sent = uponode("tx", "bond", "--home", str(home), "--amount", "3", "--no-wait", timeout=60)
    pending = uponode("tx", "status", sent.stdout.strip(), "--rpc", server.url, timeout=60)
    assert pending.returncode == 0 and pending.stdout == "pending\n"
    unknown = uponode("tx", "status", "ab" * 32, "--rpc", server.url, timeout=60)
    assert unknown.returncode == 1 and "unknown to the node" in unknown.stderr


def test_an_overspend_is_refused_at_submission_with_its_reason(server, home):
    assert_one_line_error(uponode("tx", "transfer", "--home", str(home), "--to", RECIPIENT,
                                  "--amount", "1000000", timeout=60), "HTTP 422", "insufficient_balance")


@pytest.mark.parametrize("value", ["ab" * 31, "zz" * 32, "ab" * 32 + "0", ""])
def test_tx_status_bad_hash(value):
    assert_one_line_error(uponode("tx", "status", value, timeout=60), "64 hex digits")


def test_an_unbond_the_ledger_would_refuse_is_refused_at_submission(server, home):
    """The bond is 25 (build_chain): the next block could not apply this, and waiting would
    not change that, so the node says why at once."""
    assert_one_line_error(uponode("tx", "unbond", "--home", str(home), "--amount", "26", timeout=60),
                          "HTTP 422", "insufficient_bond", "bond 25 < amount 26")


def test_status_tells_this_nodes_own_work_in_words(tmp_path):
    path = write_genesis(tmp_path / "genesis")
    raw = json.loads(path.read_text())
    raw["accounts"][0]["balance"] = 2 * raw["economics"]["min_miner_bond"]  # enough to bond as a miner
    path.write_text(json.dumps(raw))
    genesis = load_genesis(path)
    with ChainStore.open(tmp_path / "db") as store:
        chain = build_chain(store, genesis)
        api = make_api(chain)
        work = WorkProgress(round=0, units_trained=1, audit_tasks=3, audits_done=2, last_reward=(0, 120))
        api.node_status = lambda: dataclasses.replace(NODE_STATUS, me=USER.public_key, mining=True, work=work)
        with ServerThread(api) as server:
            unregistered = uponode("status", "--rpc", server.url, timeout=60)
            server.call(lambda: finalize_next(chain, [
                sign_tx(USER, genesis.chain_id, 3, Bond(genesis.economics.min_miner_bond), FEE),
                sign_tx(USER, genesis.chain_id, 4, RegisterMiner(units=1), FEE)]))
            registered = uponode("status", "--rpc", server.url, timeout=60)
            as_json = uponode("status", "--rpc", server.url, "--json", timeout=60)
    bond = 25 + genesis.economics.min_miner_bond
    assert f"mining: not registered yet: bond 25 (a miner needs {genesis.economics.min_miner_bond}; " \
           "`uponode tx bond` adds to it)" in unregistered.stdout.splitlines()
    assert registered.stdout.splitlines()[-3:] == [
        f"account: {USER.public_key.hex()}",
        f"mining: registered for 1 unit(s) a round, bond {bond}; round 0: 1 unit(s) trained, 0 committed; "
        "last reward 120 for round 0",
        "auditing: round 0: 2 of 3 assigned unit(s) re-executed and reported"]
    reply = json.loads(as_json.stdout)
    assert reply["mining"] == {"enabled": True, "registered": True, "units": 1, "bond": bond,
                               "min_bond": genesis.economics.min_miner_bond, "round": 0, "units_trained": 1,
                               "units_committed": 0, "last_reward": {"round": 0, "amount": 120}}
    assert reply["auditing"] == {"round": 0, "tasks": 3, "done": 2}
