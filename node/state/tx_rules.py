"""The validity rules of every transaction kind, and what each one writes.

apply_tx checks what every transaction shares (size, signature, nonce, fee), takes
the fee, then hands the payload to its kind's rule; a rule either writes its changes to the block's
Transition or raises TxError with a stable reason code, and then the transaction
leaves the overlay as it was.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from node.state.equivocation import double_sign, require_unbondable
from node.state.records import (SUPPLY_KEY, U64_MAX, AuditorRecord, DisputeRecord, FraudRecord, MinerRecord,
                                audit_key, auditor_key, commitment_key, delta_claim_key, dispute_key, fraud_key,
                                miner_key, withheld_key)
from node.state.transition import Transition, TxError
from node.types.genesis import BPS
from node.types.merkle import verify_inclusion
from node.types.transactions import (MAX_MINER_UNITS, NO_CARRY, AuditReport, Bond, DeltaWithheld,
                                     DoubleSignEvidence, EvidenceDispute, FraudProof, RegisterAuditor, RegisterMiner,
                                     SignedTx, Transfer, Unbond, WithheldClaim, WorkCommitment)
from node.uPoW.assignment import UnitChallenge, assign_unit
from node.uPoW.evidence import evidence_lock, report_evidence
from node.uPoW.oracle import KERNEL_VERSION


def apply_tx(t: Transition, tx: SignedTx) -> None:
    """Apply one transaction to t, or raise TxError and change nothing.  WorkUnavailable
    (a fraud proof this node cannot decide yet) also changes nothing."""
    size = len(tx.encode())
    if size > t.consensus.max_tx_bytes:
        raise TxError("oversize", f"{size} bytes exceeds the cap of {t.consensus.max_tx_bytes}")
    if not tx.signature_valid(t.chain_id):
        raise TxError("bad_signature", "the signature does not verify for this sender and chain")
    sender = tx.body.sender
    account = t.account(sender)
    if tx.body.nonce < account.nonce:
        raise TxError("nonce_replayed", f"nonce {tx.body.nonce} was already used (next is {account.nonce})")
    if tx.body.nonce > account.nonce:
        raise TxError("nonce_skipped", f"nonce {tx.body.nonce} skips ahead of {account.nonce}")
    fee = tx.body.fee
    if fee < t.economics.min_tx_fee:
        raise TxError("fee_too_low", f"fee {fee} is below the minimum {t.economics.min_tx_fee}")
    if fee > account.balance:
        raise TxError("insufficient_balance", f"balance {account.balance} < fee {fee}")
    with t.all_or_nothing():
        # the fee first: what the payload may spend is what is left after it
        t.put_account(sender, dataclasses.replace(account, nonce=account.nonce + 1, balance=account.balance - fee))
        _RULES[type(tx.body.payload)](t, sender, tx.body.payload)
        _pay_fee(t, fee)


def _pay_fee(t: Transition, fee: int) -> None:
    """fee_burn_bps of the fee burned, the rest to the block's proposer."""
    burned = fee * t.economics.fee_burn_bps // BPS
    proposer = t.account(t.proposer)
    if proposer.balance + fee - burned > U64_MAX:
        raise TxError("overflow", "the proposer's balance would overflow")
    t.put_account(t.proposer, dataclasses.replace(proposer, balance=proposer.balance + fee - burned))
    supply = t.supply()
    t.put(SUPPLY_KEY, dataclasses.replace(supply, burned=supply.burned + burned))


def _transfer(t: Transition, sender: bytes, p: Transfer) -> None:
    _require_positive(p.amount)
    source = t.account(sender)
    if p.amount > source.balance:
        raise TxError("insufficient_balance", f"balance {source.balance} < amount {p.amount}")
    t.put_account(sender, dataclasses.replace(source, balance=source.balance - p.amount))
    target = t.account(p.to)
    if target.balance + p.amount > U64_MAX:
        raise TxError("overflow", "the recipient's balance would overflow")
    t.put_account(p.to, dataclasses.replace(target, balance=target.balance + p.amount))


def _bond(t: Transition, sender: bytes, p: Bond) -> None:
    _require_positive(p.amount)
    account = t.account(sender)
    if p.amount > account.balance:
        raise TxError("insufficient_balance", f"balance {account.balance} < amount {p.amount}")
    if account.bond + p.amount > U64_MAX:
        raise TxError("overflow", "the bond would overflow")
    t.put_account(sender, dataclasses.replace(
        account, balance=account.balance - p.amount, bond=account.bond + p.amount))


def _unbond(t: Transition, sender: bytes, p: Unbond) -> None:
    _require_positive(p.amount)
    account = t.account(sender)
    if p.amount > account.bond:
        raise TxError("insufficient_bond", f"bond {account.bond} < amount {p.amount}")
    require_unbondable(t, sender)
    remaining = account.bond - p.amount
    miner = t.miner(sender)
    if miner is not None and remaining < miner.units * t.economics.min_miner_bond:
        raise TxError("below_miner_bond",
                      f"a miner of {miner.units} units must keep a bond of {miner.units * t.economics.min_miner_bond}")
    if t.is_auditor(sender) and remaining < t.economics.min_auditor_bond:
        raise TxError("below_auditor_bond", f"an auditor must keep a bond of {t.economics.min_auditor_bond}")
    t.put_account(sender, dataclasses.replace(account, balance=account.balance + p.amount, bond=remaining))


def _register_miner(t: Transition, sender: bytes, p: RegisterMiner) -> None:
    if not 1 <= p.units <= MAX_MINER_UNITS:
        raise TxError("bad_units", f"units must be 1..{MAX_MINER_UNITS}, got {p.units}")
    miner = t.miner(sender)
    if miner is not None and p.units <= miner.units:
        # fewer units would free bond that units already committed still stake
        raise TxError("already_registered", f"the sender is already a miner of {miner.units} units; "
                                            "a registration may only add units")
    # every unit carries its own bond, so each unit can pay for a fake (node.types.penalty)
    bond, needed = t.account(sender).bond, p.units * t.economics.min_miner_bond
    if bond < needed:
        raise TxError("insufficient_bond",
                      f"bond {bond} is below the minimum {needed} for {p.units} units")
    since = t.height if miner is None else miner.since_height
    t.put(miner_key(sender), MinerRecord(units=p.units, since_height=since))


def _register_auditor(t: Transition, sender: bytes, p: RegisterAuditor) -> None:
    if t.is_auditor(sender):
        raise TxError("already_registered", "the sender is already an auditor")
    bond = t.account(sender).bond
    if bond < t.economics.min_auditor_bond:
        raise TxError("insufficient_bond",
                      f"bond {bond} is below the auditor minimum {t.economics.min_auditor_bond}")
    t.put(auditor_key(sender), AuditorRecord(since_height=t.height))


def _work_commitment(t: Transition, sender: bytes, p: WorkCommitment) -> None:
    if p.round != t.schedule.round_of(t.height) or t.height > t.schedule.commit_deadline(p.round):
        raise TxError("outside_window", f"height {t.height} takes no commitments for round {p.round}")
    miner = t.miner(sender)
    if miner is None:
        raise TxError("unknown_miner", "the sender is not a registered miner")
    if p.unit >= miner.units:
        raise TxError("unit_out_of_range", f"unit {p.unit} but the miner has {miner.units} units")
    bond, needed = t.account(sender).bond, miner.units * t.economics.min_miner_bond
    if bond < needed:
        # a slashed miner has nothing left to lose: it may not commit until it bonds again
        raise TxError("insufficient_bond", f"bond {bond} is below the minimum {needed} for {miner.units} units")
    if p.start_root != t.model().root:
        raise TxError("wrong_start", "the unit does not start from the chain's current model")
    shard = assign_unit(t.round_start_hash(p.round), sender, p.unit).shard
    if p.shard != shard:
        raise TxError("wrong_shard", f"shard {p.shard}, but the unit is assigned shard {shard}")
    segments = t.training.segments
    if p.checkpoint_count != segments + 1:
        raise TxError("bad_checkpoint_count", f"{p.checkpoint_count} checkpoints, a unit has {segments + 1}")
    if len(p.evidence_locks) != segments:
        raise TxError("bad_evidence_locks", f"{len(p.evidence_locks)} evidence locks, a unit has {segments} segments")
    if len(p.loss_trace) != t.training.steps_per_unit:
        raise TxError("bad_loss_trace",
                      f"{len(p.loss_trace)} losses, a unit has {t.training.steps_per_unit} steps")
    if p.kernel_version != KERNEL_VERSION:
        raise TxError("wrong_kernel", f"kernel version {p.kernel_version}, the chain runs {KERNEL_VERSION}")
    carry = t.carry(sender, p.unit)
    if (p.carried_leaf, p.start_step) != (NO_CARRY, 0) and (
            carry is None or (p.carried_leaf, p.start_step) != (carry.leaf, carry.step)):
        raise TxError("wrong_carry", "the unit carries optimizer state that is not the end of the miner's last "
                                     "accepted unit of this index")
    if t.commitment(p.round, sender, p.unit) is not None:
        raise TxError("duplicate_commitment", f"unit {p.unit} of round {p.round} is already committed")
    t.put(commitment_key(p.round, sender, p.unit), p)


def _audit_report(t: Transition, sender: bytes, p: AuditReport) -> None:
    _require_audit_window(t, p.round)
    commitment = _known_commitment(t, p.round, p.miner, p.unit)
    challenge = _unit_challenge(t, p.round, p.miner, p.unit)
    if p.segment not in challenge.segments:
        raise TxError("not_challenged", f"segment {p.segment} of this unit is not challenged")
    if not _may_audit(t, sender, p.round, p.miner, p.unit, p.segment, challenge):
        raise TxError("not_assigned", f"the sender is not assigned to audit segment {p.segment} of this unit")
    if not verify_inclusion(commitment.checkpoint_root, p.result_hash, p.segment + 1,
                            commitment.checkpoint_count, p.result_proof):
        raise TxError("bad_proof", f"the result is not leaf {p.segment + 1} of the committed tree")
    if t.audit(p.round, p.miner, p.unit, p.segment, sender) is not None:
        raise TxError("duplicate_audit", "this auditor already reported this segment")
    t.put(audit_key(p.round, p.miner, p.unit, p.segment, sender), p)


def _may_audit(t: Transition, sender: bytes, round_: int, miner: bytes, unit: int, segment: int,
               challenge: UnitChallenge) -> bool:
    """The auditors a draw names may report its segments; once one of them has claimed
    some of the unit's data withheld, or a report on it was disputed, so may anyone
    eligible at the challenge but the miner: a fallback that clears a miner whose data
    was there after all, so a false claim (or a claimer that then stays silent) or a
    lazy auditor cannot cost an honest miner its bond or its reward."""
    if segment in challenge.segments_of(sender):
        return True
    return (sender != miner and sender in t.challenge(round_).eligible
            and bool(t.unit_withheld_claims(round_, miner, unit) or t.unit_disputes(round_, miner, unit)))


def _unit_challenge(t: Transition, round_: int, miner: bytes, unit: int) -> UnitChallenge:
    """The unit's challenge (in the audit window, the challenge is recorded); TxError
    while its choosers are not complete."""
    challenge = t.challenge(round_).unit_challenge(miner, unit, t.training)
    if challenge is None:
        raise TxError("not_challenged_yet", "the round's challenge is not drawn yet")
    return challenge


def _withheld_claim(t: Transition, sender: bytes, p: WithheldClaim) -> None:
    if t.height not in t.schedule.claim_window(p.round):
        raise TxError("outside_window", f"height {t.height} takes no withheld claims for round {p.round}")
    _known_commitment(t, p.round, p.miner, p.unit)
    challenge = _unit_challenge(t, p.round, p.miner, p.unit)
    if p.segment not in challenge.segments:
        raise TxError("not_challenged", f"segment {p.segment} of this unit is not challenged")
    if p.segment not in challenge.segments_of(sender):
        raise TxError("not_assigned", f"the sender is not assigned to audit segment {p.segment} of this unit")
    if _segment_reported(t, p.round, p.miner, p.unit, p.segment):
        raise TxError("already_audited", f"segment {p.segment} was already re-executed and reported")
    key = withheld_key(p.round, p.miner, p.unit, p.segment, sender)
    if t.record(key, WithheldClaim) is not None:
        raise TxError("duplicate_claim", "this auditor already claimed this segment withheld")
    t.put(key, p)


def _delta_withheld(t: Transition, sender: bytes, p: DeltaWithheld) -> None:
    if t.height not in t.schedule.delta_claim_window(p.round):
        raise TxError("outside_window", f"height {t.height} takes no delta claims for round {p.round}")
    if not t.committee().power_of(sender):
        raise TxError("not_in_committee", "only a committee member may claim a delta withheld")
    _known_commitment(t, p.round, p.miner, p.unit)
    if not _segment_reported(t, p.round, p.miner, p.unit, t.training.segments - 1):
        # the last segment's auditor fetches the delta: before it reports, nothing was attested
        raise TxError("not_attested", "no auditor has attested this unit's delta yet")
    key = delta_claim_key(p.round, p.miner, p.unit, sender)
    if t.record(key, DeltaWithheld) is not None:
        raise TxError("duplicate_claim", "this member already claimed this delta withheld")
    t.put(key, p)


def _evidence_dispute(t: Transition, sender: bytes, p: EvidenceDispute) -> None:
    # until the close, which judges the disputes it carries
    if t.height not in t.schedule.delta_claim_window(p.round):
        raise TxError("outside_window", f"height {t.height} takes no disputes for round {p.round}")
    commitment = _known_commitment(t, p.round, p.miner, p.unit)
    report = t.audit(p.round, p.miner, p.unit, p.segment, p.auditor)
    if report is None:
        raise TxError("unknown_report", f"no report by this auditor on segment {p.segment}")
    if evidence_lock(p.gradient_digest) != commitment.evidence_locks[p.segment]:
        raise TxError("bad_digest", "the digest is not the one the miner's commitment locks")
    if report_evidence(p.auditor, p.gradient_digest) == report.evidence:
        raise TxError("evidence_matches", "the report's evidence is right")
    key = dispute_key(p.round, p.miner, p.unit, p.segment, p.auditor)
    if t.record(key, DisputeRecord) is not None:
        raise TxError("duplicate_dispute", "this report is already disputed")
    t.put(key, DisputeRecord(prover=sender))


def _segment_reported(t: Transition, round_: int, miner: bytes, unit: int, segment: int) -> bool:
    """Whether a report on segment stands: a disputed one never replayed it."""
    return any(s == segment for s, _, _ in t.standing_reports(round_, miner, unit))


# Fraud proofs a block may carry: each may cost a validator that has not seen it yet one
# segment's replay before it can vote (off its event loop), so a block's is bounded
FRAUD_PROOFS_PER_BLOCK = 4


def fraud_proof_count(txs: Iterable[SignedTx]) -> int:
    return sum(isinstance(tx.body.payload, FraudProof) for tx in txs)


def _fraud_proof(t: Transition, sender: bytes, p: FraudProof) -> None:
    """A well-formed proof is applied whatever its replay shows: if fraud, the miner is
    slashed and the prover paid the bounty; if not, the prover's deposit is burned, so a
    bogus proof costs its sender what it cost the validators to replay it."""
    if check_fraud_proof(t, sender, p):
        t.put(fraud_key(p.round, p.miner, p.unit), FraudRecord(prover=sender, segment=p.segment))
        t.slash(p.miner, t.economics.fraud_slash_bps, sender, t.economics.fraud_bounty_bps)
    else:
        _burn_deposit(t, sender)


def check_fraud_proof(t: Transition, sender: bytes, p: FraudProof) -> bool:
    """Whether sender's proof shows fraud, replaying its segment through t's oracle;
    TxError, before any replay, if it is malformed or the sender cannot pay the deposit.
    Writes nothing (a node pre-checks proofs with it before admitting them)."""
    _require_audit_window(t, p.round)
    commitment = _known_commitment(t, p.round, p.miner, p.unit)
    if t.fraud_record(p.round, p.miner, p.unit) is not None:
        raise TxError("already_proven", "this unit is already proven fraudulent")
    if p.segment > commitment.checkpoint_count - 1:
        raise TxError("segment_out_of_range",
                      f"segment {p.segment} of a unit with segments 0..{commitment.checkpoint_count - 1}")
    if not _claims_committed_states(commitment, p):
        raise TxError("bad_proof", "the claimed states are not the committed ones")
    if p.computed_end_hash == p.claimed_end_hash:
        # the proof itself says the segment replays as committed: refused without a replay
        raise TxError("not_fraud", "the computed hash equals the committed one")
    deposit, balance = t.economics.fraud_proof_deposit, t.account(sender).balance
    if balance < deposit:
        raise TxError("insufficient_deposit", f"balance {balance} < the fraud proof deposit {deposit}")
    assignment = assign_unit(t.round_start_hash(p.round), p.miner, p.unit)
    # the commitment rule made the unit's start root the model of its round
    return t.oracle.confirm_fraud(commitment.start_root, assignment, commitment, p)


def _burn_deposit(t: Transition, sender: bytes) -> None:
    deposit, account = t.economics.fraud_proof_deposit, t.account(sender)
    t.put_account(sender, dataclasses.replace(account, balance=account.balance - deposit))
    supply = t.supply()
    t.put(SUPPLY_KEY, dataclasses.replace(supply, burned=supply.burned + deposit))


def _require_positive(amount: int) -> None:
    if amount <= 0:
        raise TxError("zero_amount", "the amount must be positive")


def _require_audit_window(t: Transition, round_: int) -> None:
    if t.height not in t.schedule.audit_window(round_):
        raise TxError("outside_window", f"height {t.height} is outside round {round_}'s audit window")


def _known_commitment(t: Transition, round_: int, miner: bytes, unit: int) -> WorkCommitment:
    if t.miner(miner) is None:
        raise TxError("unknown_miner", "no such registered miner")
    commitment = t.commitment(round_, miner, unit)
    if commitment is None:
        raise TxError("unknown_commitment", f"no commitment for unit {unit} of round {round_}")
    return commitment


def _claims_committed_states(c: WorkCommitment, p: FraudProof) -> bool:
    """Whether the proof's start and claimed end are what the commitment holds: leaves
    segment and segment+1, or for the delta segment the last leaf and the delta hash."""
    if not verify_inclusion(c.checkpoint_root, p.start_hash, p.segment, c.checkpoint_count, p.start_proof):
        return False
    if p.segment == c.checkpoint_count - 1:
        return p.claimed_end_hash == c.delta_hash and not p.end_proof
    return verify_inclusion(c.checkpoint_root, p.claimed_end_hash, p.segment + 1, c.checkpoint_count,
                            p.end_proof)


_RULES = {
    Transfer: _transfer,
    Bond: _bond,
    Unbond: _unbond,
    RegisterMiner: _register_miner,
    RegisterAuditor: _register_auditor,
    WorkCommitment: _work_commitment,
    AuditReport: _audit_report,
    FraudProof: _fraud_proof,
    DoubleSignEvidence: double_sign,
    WithheldClaim: _withheld_claim,
    DeltaWithheld: _delta_withheld,
    EvidenceDispute: _evidence_dispute,
}
