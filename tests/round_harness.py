"""One training round through the real ledger, chain, LevelDB store, compute and
auditors, for tests that play a strategy in it: a single validator finalizes blocks,
each party has its own blob store, and the "network" copies a blob from whichever
party serves it."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import shutil

import numpy as np

from node.state.chain import Chain
from node.storage.blobstore import BlobStore
from node.storage.chainstore import ChainStore
from node.types.blocks import Block, certificate_from_precommits
from node.types.crypto import SigningKey, sha256
from node.types.genesis import Genesis, load_genesis
from node.types.merkle import merkle_root
from node.types.transactions import SignedTx, sign_tx
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from node.uPoW.model_state import genesis_model_blob
from node.uPoW.oracle import WorkOracle, WorkUnavailable
from node.uPoW.rounds import RoundSchedule
from node.uPoW.state import decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.unit_compute import UnitCompute
from node.uPoW.work import UnitWork, encode_leaves
from node.uPoW.work_oracle import BlobWorkOracle
from node.verify.auditor import Auditor, assigned_tasks

BASE = load_genesis()


def round_genesis(directory: pathlib.Path, validator: SigningKey, accounts: list[SigningKey], bond: int,
                  audit_segments: int = 2, auditors_per_unit: int = 2, round_blocks: int = 6) -> Genesis:
    """A tiny model, 6 one-step segments, rounds of round_blocks blocks (commit at 2,
    challenge at 3, audits from 4, close at round_blocks), every account bonded at the
    miner minimum."""
    raw = json.loads((BASE.directory / "devnet.json").read_text())
    raw["chain_id"] = "round-test"
    raw["model"].update(n_layer=1, n_embd=32, n_head=2, context_length=16)
    raw["training"].update(batch_size=2, steps_per_unit=6, checkpoint_every=1, audit_segments=audit_segments,
                           auditors_per_unit=auditors_per_unit)
    raw["eval"].update(batches=2)
    raw["consensus"].update(round_blocks=round_blocks, commit_blocks=2, epoch_rounds=100)
    raw["economics"].update(min_miner_bond=bond, min_auditor_bond=bond)
    raw["validators"] = [{"pub_key": validator.public_key.hex(), "power": 10}]
    raw["accounts"] = [{"address": k.public_key.hex(), "balance": 1_000_000, "bond": bond}
                       for k in [validator, *accounts]]
    corpus = directory / raw["corpus"]["path"]
    corpus.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BASE.corpus_path(), corpus)
    (directory / "genesis.json").write_text(json.dumps(raw))
    return load_genesis(directory / "genesis.json")


def fake_checkpoints(trainer: Trainer, work: UnitWork, checkpoints: list[int]) -> UnitWork:
    """work with the given checkpoints replaced by made-up states (the parameters
    nudged): the segments on either side of each no longer replay to their leaves."""
    blobs, leaves = list(work.checkpoints), list(work.leaves)
    for i in checkpoints:
        state = decode_state(trainer.layout, blobs[i])
        state.params = state.params + np.float32(1e-3)
        blobs[i] = encode_state(trainer.layout, state)
        leaves[i] = sha256(blobs[i])
    return dataclasses.replace(work, checkpoints=blobs, leaves=leaves, leaves_blob=encode_leaves(leaves),
                               checkpoint_root=merkle_root(leaves))


class Party:
    """An account with a blob store and a nonce counter; its transactions pay fee."""

    def __init__(self, key: SigningKey, directory: pathlib.Path, fee: int):
        self.key = key
        self.blobs = BlobStore(directory)
        self.nonce = 0
        self.fee = fee

    def tx(self, chain_id: str, payload) -> SignedTx:
        tx = sign_tx(self.key, chain_id, self.nonce, payload, self.fee)
        self.nonce += 1
        return tx


class Round:
    """The chain of one validator ("validator" among parties), checked by its own oracle."""

    def __init__(self, tmp_path: pathlib.Path, genesis: Genesis, keys: dict[str, SigningKey],
                 oracle: WorkOracle | None = None):
        self.genesis = genesis
        self.parties = {name: Party(key, tmp_path / name, genesis.economics.min_tx_fee) for name, key in keys.items()}
        for party in self.parties.values():
            party.blobs.put(genesis_model_blob(genesis))
        self.validator = self.parties["validator"]
        self.store = ChainStore.open(tmp_path / "chain")
        self.chain = Chain(genesis, self.store, oracle or BlobWorkOracle(genesis, self.validator.blobs))
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

    def finalize(self, txs: list[SignedTx]) -> Block:
        while True:
            try:
                block, refused = self.chain.propose(txs, self.validator.key.public_key, self.chain.height + 1)
                break
            except WorkUnavailable as missing:
                assert self.fetch_into(self.validator.blobs, missing.digest)
                self.fetched.append(missing.digest)
        assert not refused, refused
        assert len(block.txs) == len(txs), "a transaction waits for a blob the validator lacks"
        body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
        self.chain.finalize(block, certificate_from_precommits(
            [sign_vote(self.validator.key, self.genesis.chain_id, body)]))
        return block

    def audit(self, who: str, may_claim: bool = True) -> list:
        """What party `who` submits as an auditor of the round now: the payloads of its
        reports, fraud proofs and withheld claims, fallback audits of units others
        claimed withheld or whose reports were disputed included."""
        party = self.parties[who]
        state = self.chain.state
        round_ = RoundSchedule.from_genesis(self.genesis).round_of(self.chain.height)
        challenge = state.challenge(round_)
        payloads: list = []
        auditor = self.auditor(who, payloads.append)
        tasks = assigned_tasks(self.genesis, party.key.public_key, round_, state.round_start_hash(round_),
                               challenge, state.round_commitments(round_), state.round_fallback_openings(round_))
        for task in tasks:
            asyncio.run(auditor.audit(task, may_claim))
        return payloads

    def auditor(self, who: str, submit) -> Auditor:
        """The auditor of party who, fetching over the "network", computing in process."""
        party = self.parties[who]
        compute = UnitCompute(self.genesis, party.blobs)

        async def fetch(digest):
            return self.fetch_into(party.blobs, digest)

        async def replay(*args):
            return compute.replay(*args)

        return Auditor(self.genesis, party.key.public_key, party.blobs, fetch, replay, submit)

    def txs(self, who: str, payloads: list) -> list[SignedTx]:
        return [self.parties[who].tx(self.genesis.chain_id, p) for p in payloads]
