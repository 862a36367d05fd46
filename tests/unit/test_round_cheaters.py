"""One whole training round through the real ledger, chain, LevelDB store, compute and
auditors, with four cheating miners beside an honest one (the cheats are built here,
in test code): a miner that fakes a checkpoint, one that trains on other data, one
whose delta does not follow from its checkpoints, and one that withholds its blobs.
The first three are proven fraudulent and slashed, the fourth is rejected, none is
paid, and the honest miner and the auditors are paid exactly per the genesis split."""
import asyncio
import dataclasses
import json
import pathlib
import shutil

import numpy as np
import pytest

from node.types.blocks import ACCEPTED, REJECTED, SLASHED, certificate_from_precommits
from node.state.chain import Chain
from node.types.crypto import SigningKey, sha256
from node.types.genesis import load_genesis
from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.transactions import FraudProof, RegisterAuditor, RegisterMiner, sign_tx
from node.uPoW.assignment import assign_unit, challenged_segments
from node.uPoW.model_state import genesis_model, genesis_model_blob, genesis_model_root
from node.uPoW.oracle import WorkUnavailable
from node.uPoW.trainer import Trainer
from node.uPoW.unit_compute import UnitCompute
from node.uPoW.work import commitment_for, decode_delta, encode_delta, encode_leaves, train_unit
from node.types.merkle import merkle_root
from node.uPoW.state import decode_state, encode_state
from node.uPoW.work_oracle import BlobWorkOracle
from node.verify.auditor import Auditor, assigned_tasks, prune_checkpoints
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from tests.state_checks import expected_total, total_holdings

BASE = load_genesis()
VALIDATOR = SigningKey(sha256(b"round validator"))
AUDITOR = SigningKey(sha256(b"round auditor"))
MINERS = {name: SigningKey(sha256(name.encode())) for name in
          ("honest", "fake_checkpoint", "other_data", "bad_delta", "withholder")}
BOND = 10_000


def _genesis(directory: pathlib.Path):
    raw = json.loads((BASE.directory / "devnet.json").read_text())
    raw["chain_id"] = "round-test"
    raw["model"].update(n_layer=1, n_embd=32, n_head=2, context_length=16)
    raw["training"].update(batch_size=2, steps_per_unit=6, checkpoint_every=1, audit_segments=2,
                           auditors_per_unit=2)
    raw["eval"].update(batches=2)
    raw["consensus"].update(round_blocks=6, commit_blocks=2, epoch_rounds=100)
    raw["validators"] = [{"pub_key": VALIDATOR.public_key.hex(), "power": 10}]
    raw["accounts"] = [{"address": k.public_key.hex(), "balance": 1000, "bond": BOND}
                       for k in [VALIDATOR, AUDITOR, *MINERS.values()]]
    corpus = directory / raw["corpus"]["path"]
    corpus.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BASE.corpus_path(), corpus)
    (directory / "genesis.json").write_text(json.dumps(raw))
    return load_genesis(directory / "genesis.json")


class Party:
    """An account with a blob store and a nonce counter."""

    def __init__(self, key: SigningKey, directory: pathlib.Path):
        self.key = key
        self.blobs = BlobStore(directory)
        self.nonce = 0

    def tx(self, chain_id: str, payload):
        tx = sign_tx(self.key, chain_id, self.nonce, payload)
        self.nonce += 1
        return tx


class Round:
    def __init__(self, tmp_path: pathlib.Path):
        self.genesis = _genesis(tmp_path)
        self.parties = {name: Party(key, tmp_path / name) for name, key in
                        [("validator", VALIDATOR), ("auditor", AUDITOR), *MINERS.items()]}
        for party in self.parties.values():
            party.blobs.put(genesis_model_blob(self.genesis))
        self.validator = self.parties["validator"]
        self.store = ChainStore.open(tmp_path / "chain")
        self.chain = Chain(self.genesis, self.store, BlobWorkOracle(self.genesis, self.validator.blobs))
        self.fetched: list[bytes] = []  # blobs the validator had to fetch to check blocks

    def fetch_into(self, store: BlobStore, digest: bytes) -> bool:
        """The network: copy a blob from any party that serves it."""
        if store.has(digest.hex()):
            return True
        for party in self.parties.values():
            if party.blobs.has(digest.hex()):
                store.put(party.blobs.get(digest.hex()))
                return True
        return False

    def finalize(self, txs):
        while True:
            try:
                block, refused = self.chain.propose(txs, VALIDATOR.public_key, self.chain.height + 1)
                break
            except WorkUnavailable as missing:
                assert self.fetch_into(self.validator.blobs, missing.digest)
                self.fetched.append(missing.digest)
        assert not refused, refused
        body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
        self.chain.finalize(block, certificate_from_precommits(
            [sign_vote(VALIDATOR, self.genesis.chain_id, body)]))
        return block


def _cheat_work(name: str, trainer: Trainer, model, data_seed: int):
    """The unit each miner commits to, honest or not."""
    if name == "other_data":
        return train_unit(trainer, model, data_seed + 1)
    work = train_unit(trainer, model, data_seed)
    if name == "fake_checkpoint":
        # the checkpoint before the last is made up: a plausible state, but not trained
        fake = decode_state(trainer.layout, work.checkpoints[-2])
        fake.params = fake.params + np.float32(1e-3)
        blob = encode_state(trainer.layout, fake)
        checkpoints = [*work.checkpoints[:-2], blob, work.checkpoints[-1]]
        leaves = [*work.leaves[:-2], sha256(blob), work.leaves[-1]]
        return dataclasses.replace(work, checkpoints=checkpoints, leaves=leaves,
                                   leaves_blob=encode_leaves(leaves), checkpoint_root=merkle_root(leaves))
    if name == "bad_delta":
        delta = decode_delta(trainer.layout, work.delta_blob) * np.float32(2.0)
        blob = encode_delta(delta)
        return dataclasses.replace(work, delta_blob=blob, delta_hash=sha256(blob))
    return work


@pytest.fixture
def round_(tmp_path):
    r = Round(tmp_path)
    yield r
    r.store.close()


def test_cheaters_are_caught_slashed_and_unpaid_while_the_honest_miner_is_paid(round_):
    r, g = round_, round_.genesis
    chain_id = g.chain_id
    # block 1: registrations
    r.finalize([r.parties[name].tx(chain_id, RegisterMiner(units=1)) for name in MINERS]
               + [r.parties["auditor"].tx(chain_id, RegisterAuditor())])
    # the train phase: every miner trains its assigned unit from the genesis model
    trainer = Trainer(g)
    model = genesis_model(g)
    works = {}
    for name, key in MINERS.items():
        assignment = assign_unit(r.chain.genesis_hash, key.public_key, 0)
        works[name] = _cheat_work(name, trainer, model, assignment.data_seed)
        if name != "withholder":
            r.parties[name].blobs.put(works[name].leaves_blob)
            r.parties[name].blobs.put(works[name].delta_blob)
    r.finalize([r.parties[name].tx(chain_id, commitment_for(0, 0, 0, genesis_model_root(g), work))
                for name, work in works.items()])
    challenge_block = r.finalize([])  # block 3: its hash draws the challenges
    n = g.training.segments
    for name, key in MINERS.items():
        if name == "withholder":
            continue  # serves nothing
        for segment in challenged_segments(challenge_block.hash, key.public_key, 0, n,
                                           g.training.audit_segments):
            r.parties[name].blobs.put(works[name].checkpoints[segment])
    r.finalize([])  # block 4 records the challenge

    # the audit phase: both auditors (the validator and the registered auditor) audit
    state = r.chain.state
    challenge = state.challenge(0)
    reports = []
    for who in ("validator", "auditor"):
        party = r.parties[who]
        compute = UnitCompute(g, party.blobs)

        async def fetch(digest, store=party.blobs):
            return r.fetch_into(store, digest)

        async def replay(*args, compute=compute):
            return compute.replay(*args)

        auditor = Auditor(g, party.blobs, fetch, replay,
                          lambda payload, party=party: reports.append((party, payload)))
        tasks = assigned_tasks(g, party.key.public_key, 0, state.round_start_hash(0), challenge.hash,
                               list(challenge.eligible), state.round_commitments(0))
        assert len(tasks) == len(MINERS)
        for task in tasks:
            reported = asyncio.run(auditor.audit(task))
            assert reported == (task.miner != MINERS["withholder"].public_key)
    # only one fraud proof per unit can slash: the first prover's goes in
    proven, txs = set(), []
    for party, payload in reports:
        if isinstance(payload, FraudProof):
            if payload.miner in proven:
                continue
            proven.add(payload.miner)
        txs.append(party.tx(chain_id, payload))
    bonds_before = {name: state.account(k.public_key).bond for name, k in MINERS.items()}
    supply_before = state.supply()
    r.finalize(txs)  # block 5: audits and fraud proofs, each proof confirmed by re-execution
    close_block = r.finalize([])  # block 6 closes the round

    close = close_block.close[0]
    status = {u.miner: u.status for u in close.units}
    assert status == {MINERS["honest"].public_key: ACCEPTED,
                      MINERS["fake_checkpoint"].public_key: SLASHED,
                      MINERS["other_data"].public_key: SLASHED,
                      MINERS["bad_delta"].public_key: SLASHED,
                      MINERS["withholder"].public_key: REJECTED}
    state = r.chain.state
    e = g.economics
    slash = BOND * e.fraud_slash_bps // 10_000
    for name in ("fake_checkpoint", "other_data", "bad_delta"):
        assert state.account(MINERS[name].public_key).bond == bonds_before[name] - slash
    assert state.account(MINERS["withholder"].public_key).bond == bonds_before["withholder"]
    paid = {(p.to, p.reason): p.amount for p in close.payments}
    emission = e.emission_per_round
    honest_audits = [a for a in state.round_audits(0) if a[0] == MINERS["honest"].public_key]
    assert len(honest_audits) == 2 * len(challenged_segments(
        challenge_block.hash, MINERS["honest"].public_key, 0, n, g.training.audit_segments))
    audit_share = emission * e.reward_audits_bps // 10_000 // len(honest_audits)
    expected = {(MINERS["honest"].public_key, 1): emission * e.reward_units_bps // 10_000,
                (VALIDATOR.public_key, 3): emission * e.reward_proposer_bps // 10_000}
    for _, _, _, auditor in honest_audits:
        expected[(auditor, 2)] = expected.get((auditor, 2), 0) + audit_share
    assert paid == expected
    assert all(to not in {MINERS[n].public_key for n in MINERS if n != "honest"} for to, _ in paid)
    # the model moved by the honest unit alone, and supply is conserved to the unit
    assert close.model_root != genesis_model_root(g) and state.model().root == close.model_root
    supply = state.supply()
    assert supply.emitted == supply_before.emitted + sum(paid.values())
    assert supply.burned > supply_before.burned
    assert total_holdings(state) == expected_total(supply)
    # the validator closed the round only after fetching the honest delta from its miner
    assert works["honest"].delta_hash in r.fetched

    # past the window the checkpoints go, except the starts of the proven frauds
    commitments = [c for _, _, c in state.round_commitments(0)]
    keep = {c.leaves_hash: (state.fraud_record(0, m, u).segment,)
            for m, u, c in state.round_commitments(0) if state.fraud_record(0, m, u) is not None}
    store = r.validator.blobs
    assert prune_checkpoints(store, commitments, keep) > 0
    for name in ("honest", "fake_checkpoint"):
        work = works[name]
        fraud = state.fraud_record(0, MINERS[name].public_key, 0)
        kept = {work.leaves[fraud.segment]} if fraud is not None else set()
        assert {leaf for leaf in work.leaves if store.has(leaf.hex())} == kept
    assert store.has(works["honest"].delta_hash.hex())
