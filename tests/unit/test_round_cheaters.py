"""One whole training round through the real ledger, chain, LevelDB store, compute and
auditors, with four cheating miners beside an honest one (the cheats are built here,
in test code): a miner that fakes a checkpoint, one that trains on other data, one
whose delta does not follow from its checkpoints, and one that withholds its blobs.
The first three are proven fraudulent and slashed, the fourth is claimed withheld by
its auditors and slashed the same, none is paid, and the honest miner and the
auditors are paid exactly per the genesis split."""
import dataclasses

import numpy as np
import pytest

from node.types.blocks import ACCEPTED, SLASHED, WITHHELD
from node.types.crypto import SigningKey, sha256
from node.types.merkle import merkle_root
from node.types.transactions import FraudProof, RegisterAuditor, RegisterMiner
from node.uPoW.assignment import assign_unit
from node.uPoW.data import UnitStream
from node.uPoW.model_state import genesis_model, genesis_model_root
from node.uPoW.state import decode_state, encode_state
from node.uPoW.trainer import Trainer
from node.uPoW.work import commitment_for, decode_delta, encode_delta, encode_leaves, train_unit
from node.verify.auditor import prune_checkpoints
from tests.challenges import drawn_challenge
from tests.round_harness import Round, round_genesis
from tests.state_checks import expected_total, total_holdings

VALIDATOR = SigningKey(sha256(b"round validator"))
AUDITOR = SigningKey(sha256(b"round auditor"))
MINERS = {name: SigningKey(sha256(name.encode())) for name in
          ("honest", "fake_checkpoint", "other_data", "bad_delta", "withholder")}
BOND = 10_000_000  # the genesis minimum, which makes a fake lose at this genesis' detection rate


def _cheat_work(name: str, trainer: Trainer, model, stream: UnitStream):
    """The unit each miner commits to, honest or not."""
    if name == "other_data":
        return train_unit(trainer, model, UnitStream(stream.seed + 1, stream.start))
    work = train_unit(trainer, model, stream)
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
    genesis = round_genesis(tmp_path, VALIDATOR, [AUDITOR, *MINERS.values()], BOND)
    r = Round(tmp_path, genesis, {"validator": VALIDATOR, "auditor": AUDITOR, **MINERS})
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
        works[name] = _cheat_work(name, trainer, model, assignment.stream(trainer.genesis.training, 0))
        if name != "withholder":
            r.parties[name].blobs.put(works[name].leaves_blob)
            r.parties[name].blobs.put(works[name].delta_blob)
    r.finalize([r.parties[name].tx(chain_id, commitment_for(0, 0, 0, genesis_model_root(g), work))
                for name, work in works.items()])
    r.finalize([])  # block 3: the challenge block
    r.finalize([])  # block 4 records the challenge, drawn by its proposer, the only validator
    for name, key in MINERS.items():
        if name == "withholder":
            continue  # serves nothing
        for segment in drawn_challenge(r.chain.state, 0, key.public_key, 0, g.training).segments:
            r.parties[name].blobs.put(works[name].checkpoints[segment])

    # the audit phase: both auditors (the validator and the registered auditor) audit
    state = r.chain.state
    reports = [(who, payload) for who in ("validator", "auditor") for payload in r.audit(who)]
    # only one fraud proof per unit can slash: the first prover's goes in
    proven, txs = set(), []
    for who, payload in reports:
        if isinstance(payload, FraudProof):
            if payload.miner in proven:
                continue
            proven.add(payload.miner)
        txs += r.txs(who, [payload])
    assert proven == {MINERS[n].public_key for n in ("fake_checkpoint", "other_data", "bad_delta")}
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
                      MINERS["withholder"].public_key: WITHHELD}
    state = r.chain.state
    e = g.economics
    slash = BOND * e.fraud_slash_bps // 10_000
    for name in ("fake_checkpoint", "other_data", "bad_delta", "withholder"):
        assert state.account(MINERS[name].public_key).bond == bonds_before[name] - slash
    # both assigned auditors claimed the withholder's challenged data withheld
    claims = {(a, s) for m, _, s, a in state.round_withheld_claims(0) if m == MINERS["withholder"].public_key}
    assert {a for a, _ in claims} == {VALIDATOR.public_key, AUDITOR.public_key}
    paid = {(p.to, p.reason): p.amount for p in close.payments}
    emission = e.emission_per_round
    honest_audits = [a for a in state.round_audits(0) if a[0] == MINERS["honest"].public_key]
    assert len(honest_audits) == 2 * len(drawn_challenge(state, 0, MINERS["honest"].public_key, 0, g.training).segments)
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
    # auditing the last segment fetched the honest delta (its attestation), so the close needed no fetch
    assert r.validator.blobs.has(works["honest"].delta_hash.hex()) and not r.fetched

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
