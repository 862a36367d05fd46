"""Validity rules of every transaction kind: each bad transaction is refused with its
specific reason and leaves the state exactly as it was."""
import dataclasses

import pytest

from node import genesis as g
from node.crypto import SigningKey, sha256
from node.ledger import (ACCOUNT_PREFIX, U64_MAX, Account, BlockError, ChainState, Transition, TxError, execute_block,
                         state_digest)
from node.merkle import inclusion_proof, merkle_root
from node.transactions import (AuditReport, Bond, DoubleSignEvidence, FraudProof, RegisterMiner,
                               Transfer, Unbond, WorkCommitment, sign_tx)
from node.votes import PRECOMMIT, VoteBody, sign_vote

CHAIN = "uponode-test"
ALICE, BOB, CAROL, MALLORY = (SigningKey(sha256(name.encode())) for name in
                              ("alice", "bob", "carol", "mallory"))
MIN_BOND = 100


DEFAULT_ACCOUNTS = (g.Account(ALICE.public_key, 1000, 0), g.Account(BOB.public_key, 10, 500),
                    g.Account(CAROL.public_key, 0, 1000))


def _genesis(accounts=DEFAULT_ACCOUNTS) -> g.Genesis:
    base = g.load_genesis()
    return dataclasses.replace(
        base, chain_id=CHAIN, validators=(g.Validator(CAROL.public_key, 10),), accounts=accounts,
        economics=dataclasses.replace(base.economics, min_miner_bond=MIN_BOND))


GENESIS = _genesis()


@pytest.fixture
def state() -> ChainState:
    return ChainState.from_genesis(GENESIS)


def _transition(state: ChainState) -> Transition:
    return Transition(state, CHAIN, GENESIS, height=1)


def _apply(state, *txs) -> Transition:
    t = _transition(state)
    for tx in txs:
        t.apply_tx(tx)
    state.apply_writes(t.writes)
    return t


def _refused(state, tx, reason: str) -> None:
    t = _transition(state)
    root = state.root()
    with pytest.raises(TxError) as err:
        t.apply_tx(tx)
    assert err.value.reason == reason, str(err.value)
    assert t.writes == {}
    assert state.root() == root


def _nonce(state, key) -> int:
    return state.account(key.public_key).nonce


def tx(key, payload, state, nonce=None, chain=CHAIN):
    return sign_tx(key, chain, _nonce(state, key) if nonce is None else nonce, payload)


# -- transfer and the rules common to every kind


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
        sign_tx(ALICE, CHAIN, 0, Transfer(BOB.public_key, amount))


def test_a_transfer_that_would_overflow_the_recipient_is_refused(state):
    # unreachable while supply is conserved (it fits in u64), so the state is forged here
    state.apply_writes({ACCOUNT_PREFIX + BOB.public_key: Account(balance=U64_MAX - 5).encode()})
    _refused(state, tx(ALICE, Transfer(BOB.public_key, 6), state), "overflow")


def test_an_oversize_transaction_is_refused():
    small = dataclasses.replace(GENESIS, consensus=dataclasses.replace(GENESIS.consensus, max_tx_bytes=4096))
    state = ChainState.from_genesis(small)
    t = Transition(state, CHAIN, small, 1)
    t.apply_tx(tx(BOB, RegisterMiner(1), state))
    big = tx(BOB, WorkCommitment(0, 0, 0, bytes(32), bytes(32), 1, bytes(32), tuple(range(2000)), 1),
             state, nonce=1)
    assert len(big.encode()) > 4096
    before = dict(t.writes)
    with pytest.raises(TxError) as err:
        t.apply_tx(big)
    assert err.value.reason == "oversize" and t.writes == before


def test_oversize_fields_cannot_be_encoded():
    with pytest.raises(ValueError, match="exceeds the cap"):
        WorkCommitment(0, 0, 0, bytes(32), bytes(32), 1, bytes(32), (0,) * 5000, 1).encode()


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


# -- miners, commitments, audits, fraud proofs


def test_register_miner(state):
    _apply(state, tx(BOB, RegisterMiner(2), state))
    assert _transition(state).miner(BOB.public_key).units == 2


@pytest.mark.parametrize("units", [0, 65])
def test_bad_unit_counts_are_refused(state, units):
    _refused(state, tx(BOB, RegisterMiner(units), state), "bad_units")


def test_registering_twice_is_refused(state):
    _apply(state, tx(BOB, RegisterMiner(1), state))
    _refused(state, tx(BOB, RegisterMiner(1), state), "already_registered")


def test_registering_without_the_bond_is_refused(state):
    _refused(state, tx(ALICE, RegisterMiner(1), state), "insufficient_bond")


CHECKPOINTS = [sha256(bytes([i])) for i in range(5)]


def _commitment(unit=0, count=len(CHECKPOINTS)) -> WorkCommitment:
    return WorkCommitment(round=3, unit=unit, shard=0, start_root=bytes(32),
                          checkpoint_root=merkle_root(CHECKPOINTS), checkpoint_count=count,
                          delta_hash=sha256(b"delta"), loss_trace=(1, 2), kernel_version=1)


@pytest.fixture
def mined(state) -> ChainState:
    _apply(state, tx(BOB, RegisterMiner(2), state))
    _apply(state, tx(BOB, _commitment(), state))
    return state


def test_a_commitment_from_a_non_miner_is_refused(state):
    _refused(state, tx(ALICE, _commitment(), state), "unknown_miner")


@pytest.mark.parametrize("commitment,reason", [
    (_commitment(unit=2), "unit_out_of_range"),
    (_commitment(count=0), "no_checkpoints"),
    (_commitment(), "duplicate_commitment"),
])
def test_bad_commitments_are_refused(mined, commitment, reason):
    _refused(mined, tx(BOB, commitment, mined), reason)


def _audit(miner=BOB, unit=0, segment=1, round_=3) -> AuditReport:
    return AuditReport(round=round_, miner=miner.public_key, unit=unit, segment=segment,
                       result_hash=CHECKPOINTS[segment % 5], passed=True)


def test_an_audit_of_a_commitment_is_accepted_once(mined):
    _apply(mined, tx(ALICE, _audit(), mined))
    _refused(mined, tx(ALICE, _audit(), mined), "duplicate_audit")


@pytest.mark.parametrize("audit,reason", [
    (_audit(miner=ALICE), "unknown_miner"),
    (_audit(unit=1), "unknown_commitment"),
    (_audit(round_=4), "unknown_commitment"),
    (_audit(segment=5), "segment_out_of_range"),
])
def test_bad_audits_are_refused(mined, audit, reason):
    _refused(mined, tx(ALICE, audit, mined), reason)


def _fraud(segment=1, computed=sha256(b"other"), start_proof=None) -> FraudProof:
    return FraudProof(round=3, miner=BOB.public_key, unit=0, segment=segment,
                      start_hash=CHECKPOINTS[segment],
                      start_proof=tuple(inclusion_proof(CHECKPOINTS, segment)
                                        if start_proof is None else start_proof),
                      claimed_end_hash=CHECKPOINTS[segment + 1],
                      end_proof=tuple(inclusion_proof(CHECKPOINTS, segment + 1)),
                      computed_end_hash=computed)


def test_a_fraud_proof_with_valid_merkle_proofs_is_accepted(mined):
    _apply(mined, tx(ALICE, _fraud(), mined))


@pytest.mark.parametrize("proof,reason", [
    (_fraud(computed=CHECKPOINTS[2]), "not_fraud"),
    (_fraud(start_proof=[bytes(32)] * 3), "bad_proof"),
    (dataclasses.replace(_fraud(), segment=4), "segment_out_of_range"),
])
def test_bad_fraud_proofs_are_refused(mined, proof, reason):
    _refused(mined, tx(ALICE, proof, mined), reason)


# -- blocks, accounting, roots


def test_a_block_applies_all_or_nothing(state):
    good = tx(ALICE, Transfer(BOB.public_key, 5), state)
    bad = tx(ALICE, Transfer(BOB.public_key, 5), state, nonce=5)
    root = state.root()
    with pytest.raises(BlockError, match="transaction 1: nonce_skipped"):
        execute_block(state, GENESIS, 1, [good, bad])
    assert state.root() == root
    transition = execute_block(state, GENESIS, 1, [good])
    assert state.root_after(transition.writes) != root


def test_a_failed_transaction_keeps_earlier_writes_of_the_block(state):
    t = _transition(state)
    t.apply_tx(tx(ALICE, Transfer(BOB.public_key, 5), state))
    before = dict(t.writes)
    with pytest.raises(TxError):
        t.apply_tx(tx(ALICE, Transfer(BOB.public_key, 10_000), state, nonce=1))
    assert t.writes == before


def test_emit_and_slash_conserve_supply(state):
    t = _transition(state)
    t.emit(ALICE.public_key, 1234)
    bounty, burned = t.slash(BOB.public_key, 5000, ALICE.public_key, 4000)
    assert (bounty, burned) == (100, 150)
    state.apply_writes(t.writes)
    supply = state.supply()
    assert state.total_holdings() == supply.expected_total == 2510 + 1234 - 150


def test_the_root_is_recomputable_from_the_entries(state):
    _apply(state, tx(ALICE, Transfer(BOB.public_key, 5), state))
    assert state.root() == state_digest(state.entries.items())
    assert state.root() == ChainState(dict(state.entries)).root()


# -- equivocation evidence


def _votes(key=CAROL, second_hash=b"\x02" * 32, second_round=0, signer2=None):
    first = sign_vote(key, CHAIN, VoteBody(PRECOMMIT, 9, 0, b"\x01" * 32))
    second = sign_vote(signer2 or key, CHAIN, VoteBody(PRECOMMIT, 9, second_round, second_hash))
    return DoubleSignEvidence(first, second)


def test_double_sign_evidence_slashes_the_validator_and_pays_the_reporter(state):
    _apply(state, tx(ALICE, _votes(), state))
    economics = GENESIS.economics
    taken = 1000 * economics.fraud_slash_bps // 10_000
    bounty = taken * economics.fraud_bounty_bps // 10_000
    assert state.account(CAROL.public_key).bond == 1000 - taken
    assert state.account(ALICE.public_key).balance == 1000 + bounty
    assert state.supply().burned == taken - bounty
    assert state.total_holdings() == state.supply().expected_total
    _refused(state, tx(ALICE, _votes(), state), "duplicate_evidence")


@pytest.mark.parametrize("evidence,reason", [
    (_votes(second_hash=b"\x01" * 32), "not_equivocation"),
    (_votes(second_round=1), "not_equivocation"),
    (_votes(signer2=ALICE), "not_equivocation"),
    (_votes(key=BOB), "not_in_committee"),
])
def test_bad_double_sign_evidence_is_refused(state, evidence, reason):
    _refused(state, tx(ALICE, evidence, state), reason)


def test_double_sign_evidence_with_a_forged_vote_is_refused(state):
    evidence = _votes()
    forged = dataclasses.replace(evidence, second=dataclasses.replace(evidence.second, signature=bytes(64)))
    _refused(state, tx(ALICE, forged, state), "bad_proof")
