"""A light auditor's fraud proof lands even though its miner withholds the checkpoint
the proof starts from.

A real full node (the only validator: chain, LevelDB store, consensus, HTTP API,
compute worker) and a real light-audit node run in this process; the cheating miner
is played here: it commits a unit whose checkpoint before the last is made up, and
serves its blobs from its own small server, each checkpoint once, so the light
auditor gets the challenged checkpoint and nobody else ever can.  The light auditor
sends its fraud proof with that checkpoint (POST /fraud_proofs); the full node checks
it is the committed leaf, replays it in its worker, and the block that carries the
proof slashes the miner and pays the auditor."""
import asyncio
import dataclasses
import json
import pathlib
import shutil
import socket

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from node.node import Node
from node.storage.home import init_home, load_home
from node.types.crypto import SigningKey, sha256
from node.types.genesis import Genesis, load_genesis
from node.types.merkle import merkle_root
from node.types.transactions import RegisterMiner, sign_tx
from node.uPoW.assignment import assign_unit
from node.uPoW.model_state import genesis_model, genesis_model_root
from node.uPoW.state import decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import UnitWork, commitment_for, encode_leaves, train_unit
from node.verify.light_audit import LightAuditor

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

BASE = load_genesis()
FEE = BASE.economics.min_tx_fee
VALIDATOR = SigningKey(sha256(b"light fraud validator"))
AUDITOR = SigningKey(sha256(b"light fraud auditor"))
MINER = SigningKey(sha256(b"light fraud miner"))
BOND = 10_000_000
BALANCE = 1_000_000
DEADLINE_S = 120


def _genesis(directory: pathlib.Path) -> Genesis:
    """A tiny model, 6 one-step segments, quick blocks; a round of 60 blocks whose
    audit window (6..59, some 13 s) leaves the light auditor time to follow the chain,
    fetch, replay (its kernels load on its first audit) and prove."""
    raw = json.loads((BASE.directory / "devnet.json").read_text())
    raw["chain_id"] = "light-fraud-test"
    raw["model"].update(n_layer=1, n_embd=32, n_head=2, context_length=16)
    raw["training"].update(batch_size=2, steps_per_unit=6, checkpoint_every=1, audit_segments=2,
                           auditors_per_unit=2)
    raw["eval"].update(batches=2)
    raw["consensus"].update(round_blocks=60, commit_blocks=4, epoch_rounds=100, block_interval_ms=250)
    raw["economics"].update(min_miner_bond=BOND, min_auditor_bond=BOND)
    raw["validators"] = [{"pub_key": VALIDATOR.public_key.hex(), "power": 10}]
    raw["accounts"] = [{"address": k.public_key.hex(), "balance": BALANCE, "bond": BOND}
                       for k in (VALIDATOR, AUDITOR, MINER)]
    corpus = directory / raw["corpus"]["path"]
    corpus.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BASE.corpus_path(), corpus)
    (directory / "genesis.json").write_text(json.dumps(raw))
    return load_genesis(directory / "genesis.json")


def _faked_unit(genesis: Genesis) -> UnitWork:
    """The miner's unit of round 0, its checkpoint before the last made up."""
    trainer = Trainer(genesis)
    stream = assign_unit(bytes.fromhex(genesis.hash), MINER.public_key, 0).stream(genesis.training, 0)
    work = train_unit(trainer, genesis_model(genesis), stream)
    fake = decode_state(trainer.layout, work.checkpoints[-2])
    fake.params = fake.params + np.float32(1e-3)
    blob = encode_state(trainer.layout, fake)
    leaves = [*work.leaves[:-2], sha256(blob), work.leaves[-1]]
    return dataclasses.replace(work, checkpoints=[*work.checkpoints[:-2], blob, work.checkpoints[-1]],
                               leaves=leaves, leaves_blob=encode_leaves(leaves), checkpoint_root=merkle_root(leaves))


class WithholdingMiner:
    """The miner's blob server: its leaves and delta, and each checkpoint once only."""

    def __init__(self, work: UnitWork):
        self.blobs = {sha256(b): b for b in (work.leaves_blob, work.delta_blob)}
        self.once = {sha256(b): b for b in work.checkpoints}
        self.served: list[bytes] = []  # checkpoints handed out, then withheld
        self.app = web.Application()
        self.app.add_routes([web.get("/blobs/{digest}", self.blob)])

    async def blob(self, request: web.Request) -> web.Response:
        digest = bytes.fromhex(request.match_info["digest"])
        if digest in self.once:
            self.served.append(digest)
            return web.Response(body=self.once.pop(digest))
        if digest in self.blobs:
            return web.Response(body=self.blobs[digest])
        return web.json_response({"error": "not here"}, status=404)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        assert loop.time() < deadline, f"timed out after {DEADLINE_S} s waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_light_auditors_proof_against_a_withholding_miner_lands(tmp_path):
    genesis = _genesis(tmp_path)
    work = _faked_unit(genesis)
    init_home(tmp_path / "validator", tmp_path / "genesis.json", key=VALIDATOR)
    init_home(tmp_path / "auditor", tmp_path / "genesis.json", key=AUDITOR)
    node_address, miner_port = f"127.0.0.1:{_free_port()}", _free_port()
    node = Node(load_home(tmp_path / "validator"), node_address, (), mine=False)
    miner = WithholdingMiner(work)
    runner = web.AppRunner(miner.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", miner_port).start()
    # the light auditor follows the full node, and fetches blobs from it or the miner
    auditor = LightAuditor(load_home(tmp_path / "auditor"), [node_address, f"127.0.0.1:{miner_port}"])
    stop = asyncio.Event()
    running = [asyncio.create_task(node.run(stop)), asyncio.create_task(auditor.run(stop))]
    try:
        chain_id, commitment = genesis.chain_id, commitment_for(0, 0, 0, genesis_model_root(genesis), work)
        # the light auditor registers itself as an auditor
        txs = [sign_tx(MINER, chain_id, 0, RegisterMiner(units=1), FEE), sign_tx(MINER, chain_id, 1, commitment, FEE)]
        async with aiohttp.ClientSession() as session, asyncio.timeout(DEADLINE_S):
            while True:  # until its API listens
                try:
                    async with session.get(f"http://{node_address}/status"):
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            for tx in txs:
                async with session.post(f"http://{node_address}/txs", data=tx.encode().hex()) as reply:
                    assert reply.status == 200, await reply.text()
        def proven():
            return node.chain.state.fraud_record(0, MINER.public_key, 0)
        await _until(proven, "the light auditor's fraud proof to land")
        record = proven()
        assert record.prover == AUDITOR.public_key
        start = work.leaves[record.segment]
        # the miner handed the start out once, to the light auditor, and withholds it since
        assert start in miner.served and start not in miner.once
        assert node.blobs.has(start.hex())  # the node has it from the upload, and serves it on
        slashed = BOND * genesis.economics.fraud_slash_bps // 10_000
        assert node.chain.state.account(MINER.public_key).bond == BOND - slashed
        # the auditor keeps its deposit and earns the bounty; each of its transactions
        # (its registration and its proof) paid the minimum fee
        bounty = slashed * genesis.economics.fraud_bounty_bps // 10_000
        auditor = node.chain.state.account(AUDITOR.public_key)
        assert auditor.nonce == 2 and auditor.balance == BALANCE + bounty - auditor.nonce * FEE
    finally:
        stop.set()
        await asyncio.gather(*running)
        await runner.cleanup()
