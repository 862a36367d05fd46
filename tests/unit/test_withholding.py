"""Withholding costs what fraud costs, a missing blob cannot stall a close, and an
auditor that does not replay loses its bond (DESIGN.md §2): rational strategies
played through the real ledger, chain, LevelDB store, compute and auditors
(tests/round_harness.py), each against an honest twin.

Rounds of 10 blocks: commitments at 2, the challenge at 3, audits at 4-9 (withheld
claims from 7), the close at 10."""
import asyncio
import dataclasses

import pytest

from node.state.records import UNMEASURED_LOSS
from node.state.transition import TxError
from node.types.blocks import ACCEPTED, SLASHED, WITHHELD
from node.types.crypto import SigningKey, sha256
from node.types.merkle import inclusion_proof
from node.types.transactions import (AuditReport, DeltaWithheld, FraudProof, RegisterAuditor, RegisterMiner,
                                     WithheldClaim)
from node.uPoW.assignment import assign_unit
from node.uPoW.evidence import report_evidence
from node.uPoW.mining import Miner
from node.uPoW.model_state import genesis_model, genesis_model_root
from node.uPoW.trainer import Trainer
from node.uPoW.unit_compute import UnitCompute
from node.uPoW.work import UnitWork, commitment_for, train_unit
from node.verify.auditor import AuditTask
from tests.challenges import drawn_challenge
from tests.round_harness import Round, fake_checkpoints, round_genesis
from tests.state_checks import expected_total, total_holdings

VALIDATOR = SigningKey(sha256(b"withholding validator"))
AUDITOR = SigningKey(sha256(b"withholding auditor"))
HONEST = SigningKey(sha256(b"withholding honest miner"))
CHEAT = SigningKey(sha256(b"withholding cheating miner"))
BOND = 10_000_000
CLAIMS_FROM, CLOSE = 7, 10


@pytest.fixture
def r(tmp_path):
    genesis = round_genesis(tmp_path, VALIDATOR, [AUDITOR, HONEST, CHEAT], BOND, auditors_per_unit=1,
                            round_blocks=CLOSE)
    r = Round(tmp_path, genesis, {"validator": VALIDATOR, "auditor": AUDITOR, "honest": HONEST, "cheat": CHEAT})
    yield r
    r.store.close()


def _commit(r: Round, fake: list[int] | None = None) -> dict[str, UnitWork]:
    """Blocks 1-4: registrations, both miners' commitments (the cheat's with the given
    checkpoints faked), the challenge block, the block that records it.  Each miner serves its leaves and delta."""
    g, chain_id = r.genesis, r.genesis.chain_id
    r.finalize([r.parties[n].tx(chain_id, RegisterMiner(units=1)) for n in ("honest", "cheat")]
               + [r.parties["auditor"].tx(chain_id, RegisterAuditor())])
    trainer, model = Trainer(g), genesis_model(g)
    works = {}
    for name in ("honest", "cheat"):
        key = r.parties[name].key.public_key
        work = train_unit(trainer, model, assign_unit(r.chain.genesis_hash, key, 0).stream(r.genesis.training, 0))
        works[name] = fake_checkpoints(trainer, work, fake) if name == "cheat" and fake else work
        r.parties[name].blobs.put(works[name].leaves_blob)
        r.parties[name].blobs.put(works[name].delta_blob)
    r.finalize([r.parties[n].tx(chain_id, commitment_for(0, 0, 0, genesis_model_root(g), works[n]))
                for n in ("honest", "cheat")])
    r.finalize([])  # block 3: the challenge
    r.finalize([])  # block 4 records it
    return works


def _challenged(r: Round, name: str) -> tuple[int, ...]:
    g = r.genesis
    return drawn_challenge(r.chain.state, 0, r.parties[name].key.public_key, 0, g.training).segments


def _serve_checkpoints(r: Round, name: str, work: UnitWork, skip: set[int] = frozenset()) -> None:
    for segment in _challenged(r, name):
        if segment not in skip:
            r.parties[name].blobs.put(work.checkpoints[segment])


def _assigned(r: Round, name: str) -> tuple[str, str]:
    """(assigned auditor, the other eligible party) of a miner's unit."""
    [key] = drawn_challenge(r.chain.state, 0, r.parties[name].key.public_key, 0, r.genesis.training).auditors
    assigned = next(n for n in ("validator", "auditor") if r.parties[n].key.public_key == key)
    return assigned, ({"validator", "auditor"} - {assigned}).pop()


def _until(r: Round, height: int) -> None:
    """Finalize empty blocks until the next block is at height."""
    while r.chain.height < height - 1:
        r.finalize([])


def _refusal(r: Round, who: str, payload) -> str:
    tx = r.parties[who].tx(r.genesis.chain_id, payload)
    r.parties[who].nonce -= 1  # not sent: the nonce stays free
    _, refused = r.chain.propose([tx], VALIDATOR.public_key, r.chain.height + 1)
    [(_, error)] = refused
    assert isinstance(error, TxError)
    return error.reason


def _worth(r: Round, name: str) -> int:
    account = r.chain.state.account(r.parties[name].key.public_key)
    return account.balance + account.bond


def test_withholding_the_faked_segments_on_challenge_is_slashed_like_fraud(r):
    # the cheat makes up every checkpoint after the start, so no segment replays, and
    # serves none of the challenged checkpoints (the leaves and the delta it serves)
    works = _commit(r, fake=[1, 2, 3, 4, 5])
    exposed = set(_challenged(r, "cheat"))
    assert exposed, "the draw must hit a faked segment for the strategy to be played"
    _serve_checkpoints(r, "cheat", works["cheat"], skip=exposed)
    _serve_checkpoints(r, "honest", works["honest"])
    _until(r, CLAIMS_FROM - 1)
    assigned, other = _assigned(r, "cheat")
    # the first half of the audit window is the miner's to serve in
    assert _refusal(r, assigned, WithheldClaim(0, CHEAT.public_key, 0, min(exposed))) == "outside_window"
    r.finalize([])
    # the claim window: every auditor audits what it can and claims what it cannot fetch
    txs = [tx for who in ("validator", "auditor") for tx in r.txs(who, r.audit(who))]
    claims = [tx.body.payload for tx in txs if isinstance(tx.body.payload, WithheldClaim)]
    assert {c.segment for c in claims} == exposed and all(c.miner == CHEAT.public_key for c in claims)
    r.finalize(txs)
    # the other eligible auditor falls back on the claimed unit, but cannot fetch it either
    assert not [p for p in r.audit(other) if p.miner == CHEAT.public_key]
    _until(r, CLOSE + 1)

    close = r.chain.block(CLOSE).close[0]
    assert {u.miner: u.status for u in close.units} == {HONEST.public_key: ACCEPTED, CHEAT.public_key: WITHHELD}
    state = r.chain.state
    assert state.account(CHEAT.public_key).bond == 0
    assert _worth(r, "cheat") < _worth(r, "honest")
    assert all(p.to != CHEAT.public_key for p in close.payments)
    assert total_holdings(state) == expected_total(state.supply())
    # a slashed miner has nothing at stake, so it may not commit again until it bonds
    _until(r, CLOSE + 2)
    commitment = commitment_for(1, 0, 0, state.model().root, works["cheat"])
    assert _refusal(r, "cheat", commitment) == "insufficient_bond"


def test_a_false_withheld_claim_is_cleared_by_a_fallback_auditor(r):
    works = _commit(r)
    for name in ("honest", "cheat"):
        _serve_checkpoints(r, name, works[name])
    _until(r, CLAIMS_FROM)
    assigned, other = _assigned(r, "honest")
    segment = _challenged(r, "honest")[0]
    assert _refusal(r, other, WithheldClaim(0, HONEST.public_key, 0, segment)) == "not_assigned"
    # a griefer: the assigned auditor claims one segment withheld and reports nothing
    r.finalize(r.txs(assigned, [WithheldClaim(0, HONEST.public_key, 0, segment)]))
    fallback = r.audit(other)
    assert {type(p) for p in fallback} == {AuditReport}
    assert {p.segment for p in fallback if p.miner == HONEST.public_key} == set(_challenged(r, "honest"))
    r.finalize(r.txs(other, fallback))
    assert _refusal(r, assigned, WithheldClaim(0, HONEST.public_key, 0, segment)) == "already_audited"
    _until(r, CLOSE + 1)

    close = r.chain.block(CLOSE).close[0]
    assert close.units[[u.miner for u in close.units].index(HONEST.public_key)].status == ACCEPTED
    state = r.chain.state
    assert state.account(HONEST.public_key).bond == BOND
    paid = {(p.to, p.reason) for p in close.payments}
    assert (HONEST.public_key, 1) in paid and (r.parties[other].key.public_key, 2) in paid


def test_an_attested_delta_that_vanishes_is_excluded_without_stalling_the_close(r):
    works = _commit(r)
    for name in ("honest", "cheat"):
        _serve_checkpoints(r, name, works[name])
    assert _refusal(r, "validator", DeltaWithheld(0, CHEAT.public_key, 0)) == "not_attested"
    txs = [tx for who in ("validator", "auditor") for tx in r.txs(who, r.audit(who, may_claim=False))]
    r.finalize(txs)  # block 5: every segment reported, the deltas fetched by their auditors
    # then the cheat's delta vanishes from every store (its auditor serves nothing)
    digest = works["cheat"].delta_hash.hex()
    for party in r.parties.values():
        if party.blobs.has(digest):
            party.blobs.delete(digest)
    assert _refusal(r, "auditor", DeltaWithheld(0, CHEAT.public_key, 0)) == "not_in_committee"
    # the committee (one validator: all the power) cannot fetch it and says so
    r.finalize(r.txs("validator", [DeltaWithheld(0, CHEAT.public_key, 0)]))
    _until(r, CLOSE + 1)  # the close is computed without the vanished delta

    close = r.chain.block(CLOSE).close[0]
    assert {u.miner: u.status for u in close.units} == {HONEST.public_key: ACCEPTED, CHEAT.public_key: WITHHELD}
    state = r.chain.state
    assert state.account(CHEAT.public_key).bond == 0
    assert _worth(r, "cheat") < _worth(r, "honest")
    # the model moved by the honest delta alone
    model_only_honest = r.chain.oracle.aggregate(genesis_model_root(r.genesis), [works["honest"].delta_hash],
                                                 UNMEASURED_LOSS, 0)
    assert close.model_root == model_only_honest[0]


def test_an_auditor_whose_pass_is_disproven_is_slashed(r):
    # every checkpoint after the start is made up: whatever is challenged fails
    works = _commit(r, fake=[1, 2, 3, 4, 5])
    for name in ("honest", "cheat"):
        _serve_checkpoints(r, name, works[name])
    lazy, prover = _assigned(r, "cheat")
    leaves = works["cheat"].leaves
    passes = [AuditReport(0, CHEAT.public_key, 0, s, leaves[s + 1], tuple(inclusion_proof(leaves, s + 1)), bytes(32))
              for s in _challenged(r, "cheat")]
    r.finalize(r.txs(lazy, passes))  # a pass that never replayed: the committed leaves, copied
    # anyone may prove the fraud within the window
    proofs = []
    auditor = r.auditor(prover, proofs.append)
    stream = assign_unit(r.chain.genesis_hash, CHEAT.public_key, 0).stream(r.genesis.training, 0)
    task = AuditTask(0, CHEAT.public_key, 0, r.chain.state.commitment(0, CHEAT.public_key, 0), stream,
                     _challenged(r, "cheat"))
    assert asyncio.run(auditor.audit(task))
    [proof] = proofs
    assert isinstance(proof, FraudProof) and proof.segment in _challenged(r, "cheat")
    assert r.fetch_into(r.validator.blobs, proof.start_hash)  # what a validator fetches to check it
    lazy_before, prover_before = _worth(r, lazy), r.chain.state.account(r.parties[prover].key.public_key).balance
    r.finalize(r.txs(prover, [proof]))
    _until(r, CLOSE + 1)

    close = r.chain.block(CLOSE).close[0]
    assert {u.miner: u.status for u in close.units}[CHEAT.public_key] == SLASHED
    state = r.chain.state
    assert state.account(r.parties[lazy].key.public_key).bond == 0
    assert _worth(r, lazy) < lazy_before
    assert state.account(r.parties[prover].key.public_key).balance > prover_before
    assert total_holdings(state) == expected_total(state.supply())


class _Worker:
    """A miner's compute worker, in process."""

    def __init__(self, compute: UnitCompute):
        self.compute = compute

    async def publish(self, *args):
        return self.compute.publish(*args)

    async def held_evidence(self, *args):
        return self.compute.held_evidence(*args)

    async def publish_regenerated(self, *args):
        return self.compute.publish_regenerated(*args)

    async def forget_before(self, round_):
        self.compute.forget_before(round_)


def test_a_lazy_auditor_is_disputed_by_the_miner_slashed_and_replaced(r):
    """An auditor that passes an honest unit without replaying cannot know the segment's
    gradient digest; the miner can, disputes, and a fallback auditor is paid instead."""
    works = _commit(r)
    for name in ("honest", "cheat"):
        _serve_checkpoints(r, name, works[name])
    lazy, other = _assigned(r, "honest")
    lazy_key = r.parties[lazy].key.public_key
    segments = _challenged(r, "honest")
    leaves = works["honest"].leaves
    # the lazy auditor passes without replaying: the committed leaves, and a guess at the evidence
    passes = [AuditReport(0, HONEST.public_key, 0, s, leaves[s + 1], tuple(inclusion_proof(leaves, s + 1)),
                          report_evidence(lazy_key, sha256(b"a guess")))
              for s in segments]
    lazy_before, other_before, miner_before = _worth(r, lazy), _worth(r, other), _worth(r, "honest")
    r.finalize(r.txs(lazy, passes))
    state = r.chain.state
    assert {s for s, _, _ in state.standing_reports(0, HONEST.public_key, 0)} == set(segments)

    # the honest miner, answering its challenge as a node does, finds the digests and disputes
    party = r.parties["honest"]
    commitment = state.commitment(0, HONEST.public_key, 0)
    assert r.fetch_into(party.blobs, commitment.start_root)
    disputes: list = []

    async def answer():
        miner = Miner(r.genesis, HONEST.public_key, _Worker(UnitCompute(r.genesis, party.blobs)), disputes.append,
                      lambda: r.chain.height)
        miner.on_challenge(0, state.challenge(0).drawn_seeds(), state.round_start_hash(0), [commitment])
        await asyncio.gather(*miner.tasks)
        miner.check_reports(0, [(0, s, a, report) for s, a, report in state.standing_reports(0, HONEST.public_key, 0)])
        miner.check_reports(0, [(0, s, a, report) for s, a, report in state.standing_reports(0, HONEST.public_key, 0)])
    asyncio.run(answer())
    assert [(d.segment, d.auditor) for d in disputes] == [(s, lazy_key) for s in segments]  # once each
    assert [d.gradient_digest for d in disputes] == [works["honest"].evidence[s] for s in segments]
    wrong = dataclasses.replace(disputes[0], gradient_digest=sha256(b"not the digest"))
    assert _refusal(r, "honest", wrong) == "bad_digest"
    r.finalize(r.txs("honest", disputes))
    assert r.chain.state.standing_reports(0, HONEST.public_key, 0) == []

    # the dispute opens the unit to a fallback auditor, whose evidence stands
    fallback = [p for p in r.audit(other, may_claim=False) if p.miner == HONEST.public_key]
    assert {p.segment for p in fallback} == set(segments) and {type(p) for p in fallback} == {AuditReport}
    r.finalize(r.txs(other, fallback))
    assert _refusal(r, "honest", dataclasses.replace(disputes[0], auditor=r.parties[other].key.public_key)) \
        == "evidence_matches"
    _until(r, CLOSE + 1)

    close = r.chain.block(CLOSE).close[0]
    assert {u.miner: u.status for u in close.units}[HONEST.public_key] == ACCEPTED
    state = r.chain.state
    assert state.account(lazy_key).bond == 0
    assert _worth(r, lazy) < lazy_before
    assert _worth(r, "honest") - miner_before > BOND // 2  # its unit's reward and the bounty
    assert _worth(r, other) > other_before  # the honest twin: paid for the replay it did
    assert total_holdings(state) == expected_total(state.supply())
