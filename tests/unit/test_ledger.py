"""Validity rules of every transaction kind: each bad transaction is refused with its
specific reason and leaves the state exactly as it was.

Round 0 of the test genesis: heights 1-2 take commitments, 3 is the challenge block,
4-5 the audit window, 6 closes the round.  A unit has 4 segments, so 5 checkpoints."""
import dataclasses
import itertools

import pytest

from node.types import genesis as g
from node.types.blocks import Block, BlockHeader, EMPTY_COMMIT, NO_CLOSE, certificate_from_precommits
from node.types.crypto import SigningKey, sha256
from node.state.block_execution import execute_block
from node.state.chain_state import ChainState
from node.state.records import (U64_MAX, UNMEASURED_LOSS, AccountRecord, FraudRecord, ModelRecord, account_key,
                                challenge_key)
from node.state.transition import BlockError, Transition, TxError
from node.state.tx_rules import apply_tx
from node.types.merkle import inclusion_proof, merkle_root
from node.types.transactions import (AuditReport, Bond, DoubleSignEvidence, FraudProof, RegisterAuditor,
                               RegisterMiner, Transfer, Unbond, WorkCommitment, sign_tx)
from node.uPoW.assignment import assign_unit, chooser_seed
from node.uPoW.model_state import genesis_model_root
from node.uPoW.oracle import KERNEL_VERSION, WorkUnavailable
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from tests.challenges import drawn_challenge
from tests.oracles import NoOracle
from tests.state_checks import expected_total, state_digest, total_holdings

CHAIN = "uponode-test"
ALICE, BOB, CAROL, DAVE, MALLORY = (SigningKey(sha256(name.encode())) for name in
                                    ("alice", "bob", "carol", "dave", "mallory"))
MIN_BOND = 100
FRAUD_DEPOSIT = 40
DEFAULT_ACCOUNTS = (g.Account(ALICE.public_key, 1000, 0), g.Account(BOB.public_key, 10, 500),
                    g.Account(CAROL.public_key, 0, 1000), g.Account(DAVE.public_key, 50, 300))


def _genesis(accounts=DEFAULT_ACCOUNTS) -> g.Genesis:
    base = g.load_genesis()
    return dataclasses.replace(
        base, chain_id=CHAIN, validators=(g.Validator(CAROL.public_key, 10),), accounts=accounts,
        model=dataclasses.replace(base.model, context_length=8, n_layer=1, n_head=1, n_embd=8),
        training=dataclasses.replace(base.training, steps_per_unit=4, checkpoint_every=1,
                                     audit_segments=1, auditors_per_unit=1),
        consensus=dataclasses.replace(base.consensus, round_blocks=6, commit_blocks=2),
        economics=dataclasses.replace(base.economics, min_miner_bond=MIN_BOND,
                                      min_auditor_bond=MIN_BOND, fraud_slash_bps=5000,
                                      fraud_bounty_bps=5000, fraud_proof_deposit=FRAUD_DEPOSIT,
                                      # the payload rules are the subject; fees have their own genesis below
                                      min_tx_fee=0))


GENESIS = _genesis()


class FakeOracle:
    """Confirms every fraud proof it is asked about unless told otherwise, and records
    what it was asked; not the subject here."""

    def __init__(self, confirms: bool = True, available: bool = True):
        self.confirms = confirms
        self.available = available
        self.calls: list[tuple] = []

    def confirm_fraud(self, model_root, assignment, commitment, proof) -> bool:
        self.calls.append((model_root, assignment, commitment, proof))
        if not self.available:
            raise WorkUnavailable(commitment.delta_hash)
        return self.confirms

    def aggregate(self, model_root, delta_hashes, loss_bits, round_):
        raise AssertionError("no round closes in these tests")



def parent_hash(height: int) -> bytes:
    """The stand-in hash of the block at height - 1 (a transition's parent)."""
    return sha256(b"block %d" % (height - 1))


def parent_commit(height: int):
    """The commit of the block at height - 1 that a transition's block carries."""
    if height == 1:
        return EMPTY_COMMIT
    body = VoteBody(PRECOMMIT, height - 1, 0, parent_hash(height))
    return certificate_from_precommits([sign_vote(CAROL, CHAIN, body)])


@pytest.fixture
def state() -> ChainState:
    return ChainState.from_genesis(GENESIS, genesis_model_root(GENESIS))


def _transition(state: ChainState, height: int = 1, oracle=None) -> Transition:
    return Transition(state, GENESIS, height, parent_hash(height), parent_commit(height), CAROL.public_key,
                      oracle or FakeOracle())


def _apply(state, *txs, height: int = 1, oracle=None) -> Transition:
    t = _transition(state, height, oracle)
    for tx in txs:
        apply_tx(t, tx)
    state.apply_writes(t.writes)
    return t


def _refused(state, tx, reason: str, height: int = 1, oracle=None) -> None:
    t = _transition(state, height, oracle)
    before = dict(t.writes)  # the block's own seeds, if it records any
    root = state.root()
    with pytest.raises(TxError) as err:
        apply_tx(t, tx)
    assert err.value.reason == reason, str(err.value)
    assert t.writes == before
    assert state.root() == root


def _nonce(state, key) -> int:
    return state.account(key.public_key).nonce


def tx(key, payload, state, nonce=None, chain=CHAIN):
    return sign_tx(key, chain, _nonce(state, key) if nonce is None else nonce, payload, GENESIS.economics.min_tx_fee)


# -- transfer and the rules common to every kind


FEE_GENESIS = dataclasses.replace(GENESIS, economics=dataclasses.replace(
    GENESIS.economics, min_tx_fee=10, fee_burn_bps=3000))


def _with_fees(state: ChainState, signed, proposer=DAVE) -> Transition:
    t = Transition(state, FEE_GENESIS, 1, parent_hash(1), parent_commit(1), proposer.public_key, FakeOracle())
    apply_tx(t, signed)
    state.apply_writes(t.writes)
    return t


def test_a_fee_is_paid_30_percent_burned_and_the_rest_to_the_proposer(state):
    supply = state.supply()
    _with_fees(state, sign_tx(ALICE, CHAIN, 0, Transfer(BOB.public_key, 300), 20))
    assert state.account(ALICE.public_key).balance == 1000 - 300 - 20
    assert state.account(BOB.public_key).balance == 10 + 300
    assert state.account(DAVE.public_key).balance == 50 + 14  # 70% of 20
    assert state.supply().burned == supply.burned + 6
    assert total_holdings(state) == expected_total(state.supply())


@pytest.mark.parametrize("fee, amount, reason", [
    (9, 1, "fee_too_low"),          # below the genesis minimum of 10
    (1001, 1, "insufficient_balance"),  # alice holds 1000
    (10, 991, "insufficient_balance"),  # the fee comes first: 990 are left to send
])
def test_a_transaction_that_cannot_pay_its_fee_changes_nothing(state, fee, amount, reason):
    root = state.root()
    with pytest.raises(TxError) as err:
        _with_fees(state, sign_tx(ALICE, CHAIN, 0, Transfer(BOB.public_key, amount), fee))
    assert err.value.reason == reason
    assert state.root() == root


def test_a_transaction_whose_payload_fails_pays_no_fee(state):
    """It is refused whole (a block cannot carry it), so its fee is not taken either."""
    root = state.root()
    with pytest.raises(TxError, match="insufficient_balance"):
        _with_fees(state, sign_tx(BOB, CHAIN, 0, Bond(1), 10))  # bob holds 10: the fee, nothing to bond
    assert state.root() == root


def test_the_proposer_paying_itself_a_fee_keeps_the_supply(state):
    supply = state.supply()
    _with_fees(state, sign_tx(DAVE, CHAIN, 0, Transfer(BOB.public_key, 5), 10), proposer=DAVE)
    assert state.account(DAVE.public_key).balance == 50 - 5 - 10 + 7
    assert state.supply().burned == supply.burned + 3
    assert total_holdings(state) == expected_total(state.supply())


def test_transfer_moves_the_amount_and_bumps_the_nonce(state):
    _apply(state, tx(ALICE, Transfer(BOB.public_key, 300), state))
    assert state.account(ALICE.public_key).balance == 700
    assert state.account(ALICE.public_key).nonce == 1
    assert state.account(BOB.public_key).balance == 310


def test_a_tampered_signature_is_refused(state):
    good = tx(ALICE, Transfer(BOB.public_key, 1), state)
    bad = dataclasses.replace(good, signature=bytes([good.signature[0] ^ 1]) + good.signature[1:])
    _refused(state, bad, "bad_signature")


def test_a_signature_for_another_chain_is_refused(state):
    _refused(state, tx(ALICE, Transfer(BOB.public_key, 1), state, chain="other-chain"), "bad_signature")


def test_a_body_altered_after_signing_is_refused(state):
    good = tx(ALICE, Transfer(BOB.public_key, 1), state)
    altered = dataclasses.replace(good, body=dataclasses.replace(good.body, payload=Transfer(BOB.public_key, 999)))
    _refused(state, altered, "bad_signature")


def test_a_replayed_nonce_is_refused(state):
    first = tx(ALICE, Transfer(BOB.public_key, 1), state)
    _apply(state, first)
    _refused(state, first, "nonce_replayed")


def test_a_skipped_nonce_is_refused(state):
    _refused(state, tx(ALICE, Transfer(BOB.public_key, 1), state, nonce=1), "nonce_skipped")


def test_overspend_is_refused(state):
    _refused(state, tx(ALICE, Transfer(BOB.public_key, 1001), state), "insufficient_balance")


def test_zero_amount_is_refused(state):
    _refused(state, tx(ALICE, Transfer(BOB.public_key, 0), state), "zero_amount")


@pytest.mark.parametrize("amount", [-1, 1 << 64])
def test_negative_and_overflowing_amounts_cannot_be_encoded(amount):
    with pytest.raises(ValueError, match="does not fit in u64"):
        sign_tx(ALICE, CHAIN, 0, Transfer(BOB.public_key, amount), GENESIS.economics.min_tx_fee)


def test_a_transfer_that_would_overflow_the_recipient_is_refused(state):
    # unreachable while supply is conserved (it fits in u64), so the state is forged here
    state.apply_writes({account_key(BOB.public_key): AccountRecord(balance=U64_MAX - 5).encode()})
    _refused(state, tx(ALICE, Transfer(BOB.public_key, 6), state), "overflow")


def test_an_oversize_transaction_is_refused():
    small = dataclasses.replace(GENESIS, consensus=dataclasses.replace(GENESIS.consensus, max_tx_bytes=4096))
    state = ChainState.from_genesis(small, genesis_model_root(small))
    t = Transition(state, small, 1, parent_hash(1), EMPTY_COMMIT, ALICE.public_key, NoOracle(small))
    apply_tx(t, tx(BOB, RegisterMiner(1), state))
    big = tx(BOB, WorkCommitment(0, 0, 0, bytes(32), bytes(32), 1, bytes(32), bytes(32), tuple(range(2000)), 1, ()),
             state, nonce=1)
    assert len(big.encode()) > 4096
    before = dict(t.writes)
    with pytest.raises(TxError) as err:
        apply_tx(t, big)
    assert err.value.reason == "oversize" and t.writes == before


def test_oversize_fields_cannot_be_encoded():
    with pytest.raises(ValueError, match="exceeds the cap"):
        WorkCommitment(0, 0, 0, bytes(32), bytes(32), 1, bytes(32), bytes(32), (0,) * 5000, 1, ()).encode()


def test_a_sender_without_an_account_can_spend_nothing(state):
    _refused(state, tx(MALLORY, Transfer(BOB.public_key, 1), state), "insufficient_balance")


# -- bonds


def test_bond_and_unbond_move_between_balance_and_bond(state):
    _apply(state, tx(ALICE, Bond(400), state))
    _apply(state, tx(ALICE, Unbond(150), state))
    account = state.account(ALICE.public_key)
    assert (account.balance, account.bond, account.nonce) == (750, 250, 2)


@pytest.mark.parametrize("payload,reason", [
    (Bond(0), "zero_amount"), (Bond(1001), "insufficient_balance"),
    (Unbond(0), "zero_amount"), (Unbond(1), "insufficient_bond"),
])
def test_bad_bonds_are_refused(state, payload, reason):
    _refused(state, tx(ALICE, payload, state), reason)


def test_a_committee_member_cannot_unbond(state):
    _refused(state, tx(CAROL, Unbond(10), state), "committee_member")


def test_a_miner_cannot_unbond_below_the_minimum(state):
    _apply(state, tx(BOB, RegisterMiner(1), state))
    _apply(state, tx(BOB, Unbond(500 - MIN_BOND), state))
    _refused(state, tx(BOB, Unbond(1), state), "below_miner_bond")


def test_an_auditor_cannot_unbond_below_the_minimum(state):
    _apply(state, tx(DAVE, RegisterAuditor(), state))
    _apply(state, tx(DAVE, Unbond(300 - MIN_BOND), state))
    _refused(state, tx(DAVE, Unbond(1), state), "below_auditor_bond")


# -- miners and auditors


def test_register_miner(state):
    _apply(state, tx(BOB, RegisterMiner(2), state))
    assert _transition(state).miner(BOB.public_key).units == 2


@pytest.mark.parametrize("units", [0, 65])
def test_bad_unit_counts_are_refused(state, units):
    _refused(state, tx(BOB, RegisterMiner(units), state), "bad_units")


def test_registering_twice_is_refused(state):
    _apply(state, tx(BOB, RegisterMiner(1), state))
    _refused(state, tx(BOB, RegisterMiner(1), state), "already_registered")


def test_a_miner_may_add_units_but_never_drop_them(state):
    """Dropping units would free bond that committed units still stake: register many,
    commit, drop to one, unbond before the fraud proof lands.  The ledger refuses the drop."""
    _apply(state, tx(BOB, RegisterMiner(1), state))
    since = _transition(state).miner(BOB.public_key).since_height
    _apply(state, tx(BOB, RegisterMiner(2), state))
    miner = _transition(state).miner(BOB.public_key)
    assert (miner.units, miner.since_height) == (2, since)
    _refused(state, tx(BOB, RegisterMiner(1), state), "already_registered")
    _apply(state, tx(BOB, Unbond(500 - 2 * MIN_BOND), state))
    _refused(state, tx(BOB, Unbond(1), state), "below_miner_bond")


def test_registering_without_the_bond_is_refused(state):
    _refused(state, tx(ALICE, RegisterMiner(1), state), "insufficient_bond")


def test_register_auditor_once_with_the_bond(state):
    _apply(state, tx(DAVE, RegisterAuditor(), state))
    assert state.is_auditor(DAVE.public_key) and not state.is_auditor(BOB.public_key)
    _refused(state, tx(DAVE, RegisterAuditor(), state), "already_registered")
    _refused(state, tx(ALICE, RegisterAuditor(), state), "insufficient_bond")


# -- the model and the round's seeds


def test_the_genesis_model_is_round_zero_unmeasured(state):
    assert state.model() == ModelRecord(0, genesis_model_root(GENESIS), UNMEASURED_LOSS)


def test_a_round_start_hash_is_recorded_by_the_round_s_first_block(state):
    assert state.round_start_hash(0) is None
    _apply(state, height=1)
    assert state.round_start_hash(0) == parent_hash(1)
    for height in range(2, 8):
        _apply(state, height=height)
    assert state.round_start_hash(1) == parent_hash(7)


def test_the_challenge_snapshots_committee_and_auditors_before_the_audit_window(state):
    _apply(state, tx(DAVE, RegisterAuditor(), state), height=1)
    for height in (2, 3):
        _apply(state, height=height)
    assert state.challenge(0) is None
    _apply(state, tx(BOB, RegisterAuditor(), state), height=4)  # too late for round 0
    challenge = state.challenge(0)
    assert challenge.drawn_seeds() == (chooser_seed(CHAIN, parent_commit(4), CAROL.public_key),)
    assert challenge.eligible == tuple(sorted([CAROL.public_key, DAVE.public_key]))
    _apply(state, height=5)
    assert state.challenge(0) == challenge


# -- work commitments

CHECKPOINTS = [sha256(bytes([i])) for i in range(5)]
DELTA = sha256(b"delta")


def _commitment(unit=0, round_=0, **changes) -> WorkCommitment:
    base = WorkCommitment(round=round_, unit=unit, shard=0, start_root=genesis_model_root(GENESIS),
                          checkpoint_root=merkle_root(CHECKPOINTS), checkpoint_count=len(CHECKPOINTS),
                          leaves_hash=sha256(b"".join(CHECKPOINTS)), delta_hash=DELTA,
                          loss_trace=(1, 2, 3, 4), kernel_version=KERNEL_VERSION,
                          evidence_locks=(bytes(32),) * (len(CHECKPOINTS) - 1))
    return dataclasses.replace(base, **changes)


@pytest.fixture
def registered(state) -> ChainState:
    _apply(state, tx(BOB, RegisterMiner(2), state), tx(DAVE, RegisterAuditor(), state), height=1)
    return state


@pytest.fixture
def mined(registered) -> ChainState:
    """BOB's unit 0 of round 0 committed at height 2."""
    _apply(registered, tx(BOB, _commitment(), registered), height=2)
    return registered


def test_a_commitment_in_the_train_phase_is_recorded(mined):
    assert mined.round_commitments(0) == [(BOB.public_key, 0, _commitment())]
    assert mined.round_commitments(1) == []


def test_a_commitment_from_a_non_miner_is_refused(registered):
    _refused(registered, tx(ALICE, _commitment(), registered), "unknown_miner", height=2)


@pytest.mark.parametrize("commitment,reason", [
    (_commitment(unit=2), "unit_out_of_range"),
    (_commitment(start_root=sha256(b"another model")), "wrong_start"),
    (_commitment(shard=1), "wrong_shard"),
    (_commitment(checkpoint_count=4), "bad_checkpoint_count"),
    (_commitment(checkpoint_count=0), "bad_checkpoint_count"),
    (_commitment(loss_trace=(1, 2, 3)), "bad_loss_trace"),
    (_commitment(kernel_version=KERNEL_VERSION + 1), "wrong_kernel"),
    (_commitment(), "duplicate_commitment"),
    (_commitment(unit=1, round_=1), "outside_window"),
])
def test_bad_commitments_are_refused(mined, commitment, reason):
    _refused(mined, tx(BOB, commitment, mined), reason, height=2)


@pytest.mark.parametrize("height", [3, 4, 6])
def test_a_commitment_after_the_deadline_is_refused(registered, height):
    _refused(registered, tx(BOB, _commitment(), registered), "outside_window", height=height)


def test_a_commitment_belongs_to_the_round_of_its_height(registered):
    for height in range(2, 7):
        _apply(registered, height=height)
    _refused(registered, tx(BOB, _commitment(round_=0), registered), "outside_window", height=7)
    _apply(registered, tx(BOB, _commitment(round_=1), registered), height=7)
    assert registered.round_commitments(1)[0][1:] == (0, _commitment(round_=1))


# -- audit reports


@pytest.fixture
def auditing(mined) -> ChainState:
    """mined, with the challenge block (3) done and round 0's challenge recorded (4)."""
    _apply(mined, height=3)
    _apply(mined, height=4)
    return mined


def _assignment(state, miner=BOB, unit=0):
    challenge = drawn_challenge(state, 0, miner.public_key, unit, GENESIS.training)
    key = {k.public_key: k for k in (CAROL, DAVE)}[challenge.auditors[0]]
    return challenge.segments, key


def _audit(segment, miner=BOB, unit=0, round_=0, result=None, proof=None) -> AuditReport:
    return AuditReport(round=round_, miner=miner.public_key, unit=unit, segment=segment,
                       result_hash=CHECKPOINTS[segment + 1] if result is None else result,
                       result_proof=tuple(inclusion_proof(CHECKPOINTS, segment + 1) if proof is None else proof),
                       evidence=bytes(32))


def test_an_assigned_audit_of_a_challenged_segment_is_accepted_once(auditing):
    segments, auditor = _assignment(auditing)
    assert segments[-1] == 3  # the last segment is always challenged
    _apply(auditing, tx(auditor, _audit(3), auditing), height=4)
    assert auditing.round_audits(0) == [(BOB.public_key, 0, 3, auditor.public_key)]
    _refused(auditing, tx(auditor, _audit(3), auditing), "duplicate_audit", height=5)


def test_an_audit_by_an_eligible_but_unassigned_auditor_is_refused(auditing):
    _, auditor = _assignment(auditing)
    other = DAVE if auditor is CAROL else CAROL
    _refused(auditing, tx(other, _audit(3), auditing), "not_assigned", height=4)
    _refused(auditing, tx(ALICE, _audit(3), auditing), "not_assigned", height=4)


def test_an_auditor_of_one_draw_cannot_report_a_segment_only_another_draw_asks(auditing):
    """Two choosers' draws with different auditors: each draw is checked by its own
    auditor, so one named by a colluder's draw cannot stand in for the honest draw's."""
    record = auditing.challenge(0)
    for i in itertools.count():
        seeds = (sha256(b"draw a %d" % i), sha256(b"draw b %d" % i))
        two = dataclasses.replace(record, choosers=(CAROL.public_key, DAVE.public_key), seeds=seeds,
                                  chosen_power=2, committee_power=2)
        draws = two.unit_challenge(BOB.public_key, 0, GENESIS.training).draws
        only_second = set(draws[1].segments) - set(draws[0].segments)
        if draws[0].auditors != draws[1].auditors and only_second:
            break
    auditing.apply_writes({challenge_key(0): two.encode()})
    first = {k.public_key: k for k in (CAROL, DAVE)}[draws[0].auditors[0]]
    # height 5: block 4 recorded the challenge, and no later block of the round rewrites it
    _refused(auditing, tx(first, _audit(min(only_second)), auditing), "not_assigned", height=5)
    _apply(auditing, tx(first, _audit(draws[0].segments[0]), auditing), height=5)
    assert auditing.round_audits(0) == [(BOB.public_key, 0, draws[0].segments[0], first.public_key)]


def test_an_audit_of_an_unchallenged_segment_is_refused(auditing):
    segments, auditor = _assignment(auditing)
    spared = next(s for s in range(4) if s not in segments)
    _refused(auditing, tx(auditor, _audit(spared), auditing), "not_challenged", height=4)


@pytest.mark.parametrize("height", [3, 6, 7])
def test_an_audit_outside_the_audit_window_is_refused(auditing, height):
    _, auditor = _assignment(auditing)
    _refused(auditing, tx(auditor, _audit(3), auditing), "outside_window", height=height)


@pytest.mark.parametrize("audit,reason", [
    (_audit(3, miner=ALICE), "unknown_miner"),
    (_audit(3, unit=1), "unknown_commitment"),
    (_audit(3, result=CHECKPOINTS[3]), "bad_proof"),
    (_audit(3, proof=[bytes(32)] * 3), "bad_proof"),
    (_audit(3, proof=inclusion_proof(CHECKPOINTS, 3)), "bad_proof"),
])
def test_bad_audits_are_refused(auditing, audit, reason):
    _, auditor = _assignment(auditing)
    _refused(auditing, tx(auditor, audit, auditing), reason, height=4)


# -- fraud proofs


def _fraud(segment=1, computed=sha256(b"other"), start_proof=None, claimed=None,
           end_proof=None) -> FraudProof:
    delta_claim = segment == len(CHECKPOINTS) - 1
    return FraudProof(round=0, miner=BOB.public_key, unit=0, segment=segment,
                      start_hash=CHECKPOINTS[segment],
                      start_proof=tuple(inclusion_proof(CHECKPOINTS, segment)
                                        if start_proof is None else start_proof),
                      claimed_end_hash=(DELTA if delta_claim else CHECKPOINTS[segment + 1])
                      if claimed is None else claimed,
                      end_proof=tuple(() if delta_claim else inclusion_proof(CHECKPOINTS, segment + 1))
                      if end_proof is None else tuple(end_proof),
                      computed_end_hash=computed)


@pytest.mark.parametrize("segment", [0, 1, 3, 4])
def test_a_confirmed_fraud_proof_slashes_the_miner_and_pays_the_prover(auditing, segment):
    oracle = FakeOracle()
    supply = auditing.supply()
    _apply(auditing, tx(ALICE, _fraud(segment), auditing), height=4, oracle=oracle)
    assert auditing.fraud_record(0, BOB.public_key, 0) == FraudRecord(ALICE.public_key, segment)
    taken, bounty = 500 * 5000 // 10_000, 500 * 5000 // 10_000 * 5000 // 10_000
    assert auditing.account(BOB.public_key).bond == 500 - taken
    assert auditing.account(ALICE.public_key).balance == 1000 + bounty
    assert auditing.supply().burned == supply.burned + taken - bounty
    assert total_holdings(auditing) == expected_total(auditing.supply())
    (model_root, assignment, commitment, proof), = oracle.calls
    assert model_root == genesis_model_root(GENESIS) and commitment == _commitment()
    assert assignment == assign_unit(parent_hash(1), BOB.public_key, 0) and proof == _fraud(segment)


def test_a_unit_is_proven_fraudulent_only_once(auditing):
    _apply(auditing, tx(ALICE, _fraud(1), auditing), height=4)
    _refused(auditing, tx(CAROL, _fraud(2), auditing), "already_proven", height=5)


@pytest.mark.parametrize("proof,reason", [
    (_fraud(computed=CHECKPOINTS[2]), "not_fraud"),
    (_fraud(4, computed=DELTA), "not_fraud"),
    (_fraud(start_proof=[bytes(32)] * 3), "bad_proof"),
    (_fraud(end_proof=inclusion_proof(CHECKPOINTS, 1)), "bad_proof"),
    (_fraud(claimed=CHECKPOINTS[3]), "bad_proof"),
    (_fraud(4, claimed=sha256(b"another delta")), "bad_proof"),
    (_fraud(4, end_proof=[bytes(32)]), "bad_proof"),
    (dataclasses.replace(_fraud(), segment=5), "segment_out_of_range"),
    (dataclasses.replace(_fraud(), unit=1), "unknown_commitment"),
])
def test_bad_fraud_proofs_are_refused_without_asking_the_oracle(auditing, proof, reason):
    _refused(auditing, tx(ALICE, proof, auditing), reason, height=4, oracle=NoOracle(GENESIS))


def test_a_fraud_proof_the_oracle_does_not_confirm_burns_the_provers_deposit(auditing):
    supply, alice, bob = auditing.supply(), auditing.account(ALICE.public_key), auditing.account(BOB.public_key)
    _apply(auditing, tx(ALICE, _fraud(), auditing), height=4, oracle=FakeOracle(confirms=False))
    assert auditing.fraud_record(0, BOB.public_key, 0) is None
    assert auditing.account(BOB.public_key) == bob
    assert auditing.account(ALICE.public_key) == dataclasses.replace(
        alice, balance=alice.balance - FRAUD_DEPOSIT, nonce=alice.nonce + 1)
    assert auditing.supply().burned == supply.burned + FRAUD_DEPOSIT
    assert total_holdings(auditing) == expected_total(auditing.supply())


def test_a_fraud_proof_whose_sender_cannot_pay_the_deposit_is_refused(auditing):
    # dave holds 50; a first failed proof leaves him 10, below the deposit
    _apply(auditing, tx(DAVE, _fraud(), auditing), height=4, oracle=FakeOracle(confirms=False))
    _refused(auditing, tx(DAVE, _fraud(), auditing), "insufficient_deposit", height=4, oracle=NoOracle(GENESIS))


@pytest.mark.parametrize("height", [2, 3, 6])
def test_a_fraud_proof_outside_the_audit_window_is_refused(auditing, height):
    _refused(auditing, tx(ALICE, _fraud(), auditing), "outside_window", height=height, oracle=NoOracle(GENESIS))


def test_a_fraud_proof_that_cannot_be_decided_yet_changes_nothing(auditing):
    t = _transition(auditing, height=4, oracle=FakeOracle(available=False))
    before = dict(t.writes)
    with pytest.raises(WorkUnavailable):
        apply_tx(t, tx(ALICE, _fraud(), auditing))
    assert t.writes == before


# -- blocks, accounting, roots


def _block(height: int, txs, close=()) -> Block:
    header = BlockHeader(chain_id=CHAIN, height=height, round=0, time_ms=0, prev_hash=parent_hash(height),
                         last_commit_hash=EMPTY_COMMIT.hash, tx_root=bytes(32), close_hash=NO_CLOSE,
                         state_root=bytes(32), proposer=CAROL.public_key)
    return Block(header=header, txs=tuple(txs), last_commit=EMPTY_COMMIT, close=close)


def test_a_block_applies_all_or_nothing(state):
    good = tx(ALICE, Transfer(BOB.public_key, 5), state)
    bad = tx(ALICE, Transfer(BOB.public_key, 5), state, nonce=5)
    root = state.root()
    with pytest.raises(BlockError, match="transaction 1: nonce_skipped"):
        execute_block(state, GENESIS, _block(1, [good, bad]), NoOracle(GENESIS))
    assert state.root() == root
    transition = execute_block(state, GENESIS, _block(1, [good]), NoOracle(GENESIS))
    assert state.root_after(transition.writes) != root


def test_blocks_without_fraud_proofs_or_closes_never_ask_the_oracle(state):
    heights = {1: [tx(BOB, RegisterMiner(1), state), tx(DAVE, RegisterAuditor(), state)],
               2: [tx(BOB, _commitment(), state, nonce=1)], 3: [], 4: [], 5: []}
    for height, txs in heights.items():
        state.apply_writes(execute_block(state, GENESIS, _block(height, txs), NoOracle(GENESIS)).writes)
    assert len(state.round_commitments(0)) == 1


def test_an_overlay_without_writes_reads_what_the_committed_state_holds(auditing):
    _, auditor = _assignment(auditing)
    _apply(auditing, tx(auditor, _audit(3), auditing), tx(ALICE, _fraud(), auditing), height=4)
    t = _transition(auditing, height=5)
    assert t.writes == {}  # height 5 records no seed
    reads = [lambda s: s.account(BOB.public_key), lambda s: s.miner(BOB.public_key),
             lambda s: (s.is_auditor(DAVE.public_key), s.auditors()), lambda s: s.committee(),
             lambda s: s.previous_committee(), lambda s: s.supply(), lambda s: s.model(),
             lambda s: s.round_start_hash(0), lambda s: s.challenge(0), lambda s: s.round_commitments(0),
             lambda s: s.round_audits(0), lambda s: s.fraud_record(0, BOB.public_key, 0),
             lambda s: s.work_count(0, BOB.public_key)]
    assert [read(t) for read in reads] == [read(auditing) for read in reads]


def test_a_failed_transaction_keeps_earlier_writes_of_the_block(state):
    t = _transition(state)
    apply_tx(t, tx(ALICE, Transfer(BOB.public_key, 5), state))
    before = dict(t.writes)
    with pytest.raises(TxError):
        apply_tx(t, tx(ALICE, Transfer(BOB.public_key, 10_000), state, nonce=1))
    assert t.writes == before


def test_emit_and_slash_conserve_supply(state):
    t = _transition(state)
    t.emit(ALICE.public_key, 1234)
    bounty, burned = t.slash(BOB.public_key, 5000, ALICE.public_key, 4000)
    assert (bounty, burned) == (100, 150)
    state.apply_writes(t.writes)
    supply = state.supply()
    assert total_holdings(state) == expected_total(supply) == 2860 + 1234 - 150


def test_the_root_is_recomputable_from_the_entries(state):
    _apply(state, tx(ALICE, Transfer(BOB.public_key, 5), state))
    assert state.root() == state_digest(state.entries.items())
    assert state.root() == ChainState(dict(state.entries)).root()


# -- equivocation evidence


def _votes(key=CAROL, second_hash=b"\x02" * 32, second_round=0, signer2=None, height=9):
    first = sign_vote(key, CHAIN, VoteBody(PRECOMMIT, height, 0, b"\x01" * 32))
    second = sign_vote(signer2 or key, CHAIN, VoteBody(PRECOMMIT, height, second_round, second_hash))
    return DoubleSignEvidence(first, second)


def test_double_sign_evidence_slashes_the_validator_and_pays_the_reporter(state):
    _apply(state, tx(ALICE, _votes(), state), height=10)
    economics = GENESIS.economics
    taken = 1000 * economics.double_sign_slash_bps // 10_000
    bounty = taken * economics.fraud_bounty_bps // 10_000
    assert state.account(CAROL.public_key).bond == 1000 - taken
    assert state.account(ALICE.public_key).balance == 1000 + bounty
    assert state.supply().burned == taken - bounty
    assert total_holdings(state) == expected_total(state.supply())
    # the committee's last member keeps its seat: without one no block could be decided
    assert [m.pub_key for m in state.committee().members] == [CAROL.public_key]
    _refused(state, tx(ALICE, _votes(), state), "duplicate_evidence", height=11)


@pytest.mark.parametrize("evidence,reason", [
    (_votes(second_hash=b"\x01" * 32), "not_equivocation"),
    (_votes(second_round=1), "not_equivocation"),
    (_votes(signer2=ALICE), "not_equivocation"),
    (_votes(key=BOB), "not_in_committee"),
    (_votes(height=11), "evidence_too_new"),
])
def test_bad_double_sign_evidence_is_refused(state, evidence, reason):
    _refused(state, tx(ALICE, evidence, state), reason, height=10)


def test_double_sign_evidence_with_a_forged_vote_is_refused(state):
    evidence = _votes()
    forged = dataclasses.replace(evidence, second=dataclasses.replace(evidence.second, signature=bytes(64)))
    _refused(state, tx(ALICE, forged, state), "bad_proof", height=10)
