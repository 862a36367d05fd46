"""Sybil auditors with a cheating miner (issue 12): a coalition holding a third of the
audit seats passes its miners' fake units without replaying them, through the real
ledger, chain, LevelDB store, compute and auditors (tests/round_harness.py).  A fake
drawn to an honest auditor is proven and costs its whole bond; one drawn to a Sybil
passes and earns a unit's reward.  With the genesis' bond the coalition ends the round
far behind its honest twins: the honest miners and auditors of the same round.

Rounds of 10 blocks: registrations at 1, commitments at 2, the challenge at 3, audits
from 5, the close at 10."""
import pytest

from node.types.blocks import ACCEPTED, SLASHED
from node.types.crypto import SigningKey, sha256
from node.types.merkle import inclusion_proof
from node.types.transactions import AuditReport, FraudProof, RegisterAuditor, RegisterMiner
from node.uPoW.assignment import assign_unit
from node.uPoW.evidence import report_evidence
from node.uPoW.model_state import genesis_model, genesis_model_root
from node.uPoW.trainer import Trainer
from node.uPoW.work import commitment_for, train_unit
from tests.challenges import drawn_challenge
from tests.round_harness import Round, fake_checkpoints, round_genesis
from tests.state_checks import expected_total, total_holdings

VALIDATOR = SigningKey(sha256(b"sybil test validator"))
SYBILS = [f"sybil-{i}" for i in range(2)]
AUDITORS = [f"auditor-{i}" for i in range(3)]  # with the validator: 4 honest seats of 6
CHEATS = [f"cheat-{i}" for i in range(4)]
HONEST = [f"honest-{i}" for i in range(4)]
KEYS = {name: SigningKey(sha256(b"sybil test " + name.encode())) for name in SYBILS + AUDITORS + CHEATS + HONEST}
BOND = 10_000_000
CLOSE = 10


@pytest.fixture
def r(tmp_path):
    genesis = round_genesis(tmp_path, VALIDATOR, list(KEYS.values()), BOND, audit_segments=1, auditors_per_unit=1,
                            round_blocks=CLOSE)
    r = Round(tmp_path, genesis, {"validator": VALIDATOR, **KEYS})
    yield r
    r.store.close()


def _worth(r: Round, names: list[str]) -> int:
    accounts = [r.chain.state.account(KEYS[n].public_key) for n in names]
    return sum(a.balance + a.bond for a in accounts)


def test_sybil_auditors_passing_their_miners_fakes_lose_against_honest_twins(r):
    g, chain_id = r.genesis, r.genesis.chain_id
    r.finalize([r.parties[n].tx(chain_id, RegisterMiner(units=1)) for n in CHEATS + HONEST]
               + [r.parties[n].tx(chain_id, RegisterAuditor()) for n in SYBILS + AUDITORS])
    trainer, model = Trainer(g), genesis_model(g)
    works = {}
    for name in CHEATS + HONEST:
        stream = assign_unit(r.chain.genesis_hash, KEYS[name].public_key, 0).stream(r.genesis.training, 0)
        work = train_unit(trainer, model, stream)
        # a cheat makes up every checkpoint after the start: any replay of it fails
        works[name] = fake_checkpoints(trainer, work, list(range(1, g.training.segments + 1))) \
            if name in CHEATS else work
        r.parties[name].blobs.put(works[name].leaves_blob)
        r.parties[name].blobs.put(works[name].delta_blob)
    r.finalize([r.parties[n].tx(chain_id, commitment_for(0, 0, 0, genesis_model_root(g), works[n]))
                for n in CHEATS + HONEST])
    r.finalize([])  # block 3: the challenge
    r.finalize([])  # block 4 records it
    challenge = r.chain.state.challenge(0)
    by_key = {KEYS[n].public_key: n for n in KEYS} | {VALIDATOR.public_key: "validator"}
    assert len(challenge.eligible) == 6 and sum(by_key[k] in SYBILS for k in challenge.eligible) == 2
    drawn = {}
    for name in CHEATS + HONEST:
        key = KEYS[name].public_key
        unit = drawn_challenge(r.chain.state, 0, key, 0, g.training)
        [auditor] = unit.auditors
        drawn[name] = by_key[auditor]
        for segment in unit.segments:
            r.parties[name].blobs.put(works[name].checkpoints[segment])
    caught = [n for n in CHEATS if drawn[n] not in SYBILS]
    assert caught and len(caught) < len(CHEATS), f"the draw must play both cases (chance 1 - 3^-4 - (2/3)^4): {drawn}"
    before = {"coalition": _worth(r, CHEATS + SYBILS), "twins": _worth(r, HONEST + SYBILS)}

    txs = []
    for who in ["validator", *AUDITORS, *SYBILS]:
        payloads = [p for p in r.audit(who, may_claim=False) if who not in SYBILS or by_key[p.miner] not in CHEATS]
        txs += r.txs(who, payloads)
    for name in CHEATS:  # a Sybil passes its coalition's fake with the evidence its miner hands it
        if drawn[name] in SYBILS:
            key, leaves, sybil = KEYS[name].public_key, works[name].leaves, KEYS[drawn[name]].public_key
            txs += r.txs(drawn[name], [
                AuditReport(0, key, 0, s, leaves[s + 1], tuple(inclusion_proof(leaves, s + 1)),
                            report_evidence(sybil, works[name].evidence[s]))
                for s in drawn_challenge(r.chain.state, 0, key, 0, g.training).segments])
    proofs = [tx.body.payload for tx in txs if isinstance(tx.body.payload, FraudProof)]
    assert sorted(by_key[p.miner] for p in proofs) == sorted(caught)
    assert all(r.fetch_into(r.validator.blobs, p.start_hash) for p in proofs)  # what the validator checks them with
    r.finalize(txs)
    while r.chain.height < CLOSE:
        r.finalize([])

    close = r.chain.block(CLOSE).close[0]
    status = {by_key[u.miner]: u.status for u in close.units}
    assert status == {n: SLASHED if n in caught else ACCEPTED for n in CHEATS + HONEST}
    state = r.chain.state
    assert all(state.account(KEYS[n].public_key).bond == 0 for n in caught)
    # the coalition (its miners and its Sybils) against the same seats played honestly:
    # the honest miners beside the same Sybils, who audited them honestly
    coalition = _worth(r, CHEATS + SYBILS) - before["coalition"]
    twins = _worth(r, HONEST + SYBILS) - before["twins"]
    assert coalition < twins - len(caught) * BOND // 2
    assert total_holdings(state) == expected_total(state.supply())
