"""Every read of the chain state, written once.

StateReader answers what the state holds (an account, the committee, a round's
commitments...) from two lookups a subclass provides: the record at a key, and
the keys of one kind.  The committed ChainState and a block's Transition overlay
both read through it, so a rule reads the same whether it runs on either.
"""
from __future__ import annotations

from typing import TypeVar

from node.state.records import (AUDIT_KEY_LEN, AUDIT_PREFIX, AUDITOR_KEY_LEN, AUDITOR_PREFIX, CARRY_KEY_LEN,
                                CARRY_PREFIX, COMMITMENT_KEY_LEN, COMMITMENT_PREFIX, COMMITTEE_HISTORY_KEY,
                                COMMITTEE_KEY, DELTA_CLAIM_KEY_LEN, DELTA_CLAIM_PREFIX, DISPUTE_KEY_LEN,
                                DISPUTE_PREFIX, MODEL_KEY, SUPPLY_KEY, WITHHELD_KEY_LEN, WITHHELD_PREFIX,
                                WORK_COUNT_KEY_LEN, WORK_COUNT_PREFIX, AccountRecord, AuditorRecord, CarryRecord,
                                ChallengeRecord, Committee, CommitteeChange, CommitteeHistory, DisputeRecord,
                                EquivocationRecord, FraudRecord, MinerRecord, ModelRecord, RoundSeed, Supply,
                                WorkCount, account_key, audit_key, auditor_key, carry_key, challenge_key,
                                commitment_key, dispute_key, equivocation_key, fraud_key, miner_key, round_bytes,
                                round_seed_key, split_audit_key, split_unit_key, work_count_key)
from node.types.codec import Record
from node.types.transactions import AuditReport, WorkCommitment

R = TypeVar("R", bound=Record)


class StateReader:
    """The state's reads over record() and keys(), which a subclass implements."""

    def record(self, key: bytes, cls: type[R]) -> R | None:
        """The record stored at key, decoded as cls; None if there is none."""
        raise NotImplementedError

    def keys(self, prefix: bytes, length: int) -> list[bytes]:
        """The keys of one kind (this prefix and length), in key order."""
        raise NotImplementedError

    def account(self, address: bytes) -> AccountRecord:
        return self.record(account_key(address), AccountRecord) or AccountRecord()

    def miner(self, address: bytes) -> MinerRecord | None:
        return self.record(miner_key(address), MinerRecord)

    def carry(self, miner: bytes, unit: int) -> CarryRecord | None:
        """What miner's next unit of index unit may carry; None before its first accepted one."""
        return self.record(carry_key(miner, unit), CarryRecord)

    def carried_leaves(self) -> set[bytes]:
        """Every checkpoint some miner's next unit may carry (one per miner and unit index)."""
        return {self.record(k, CarryRecord).leaf for k in self.keys(CARRY_PREFIX, CARRY_KEY_LEN)}

    def is_auditor(self, pub_key: bytes) -> bool:
        return self.record(auditor_key(pub_key), AuditorRecord) is not None

    def auditors(self) -> list[bytes]:
        """The registered auditors' keys, in key order."""
        return [k[len(AUDITOR_PREFIX):] for k in self.keys(AUDITOR_PREFIX, AUDITOR_KEY_LEN)]

    def committee(self) -> Committee:
        return self.record(COMMITTEE_KEY, Committee)

    def committee_changes(self) -> tuple[CommitteeChange, ...]:
        """The committee changes of the last evidence window (at least), oldest first."""
        history = self.record(COMMITTEE_HISTORY_KEY, CommitteeHistory)
        return history.changes if history is not None else ()

    def previous_committee(self) -> CommitteeChange | None:
        """The committee before the latest change, with the height of the block that made it."""
        changes = self.committee_changes()
        return changes[-1] if changes else None

    def committee_at(self, height: int) -> Committee:
        """The committee that decided the block at height: the one before the first change
        made at or after it, else the current one.  Answers for the heights of the
        evidence window up to the next block's."""
        change = next((c for c in self.committee_changes() if c.height >= height), None)
        return change.committee if change is not None else self.committee()

    def supply(self) -> Supply:
        return self.record(SUPPLY_KEY, Supply)

    def model(self) -> ModelRecord:
        return self.record(MODEL_KEY, ModelRecord)

    def round_start_hash(self, round_: int) -> bytes | None:
        """Recorded by the round's first block, before any transaction of the round."""
        seed = self.record(round_seed_key(round_), RoundSeed)
        return seed.hash if seed is not None else None

    def challenge(self, round_: int) -> ChallengeRecord | None:
        """Recorded by the first block of the audit window, before its transactions."""
        return self.record(challenge_key(round_), ChallengeRecord)

    def commitment(self, round_: int, miner: bytes, unit: int) -> WorkCommitment | None:
        return self.record(commitment_key(round_, miner, unit), WorkCommitment)

    def round_commitments(self, round_: int) -> list[tuple[bytes, int, WorkCommitment]]:
        """(miner, unit, commitment) of every unit committed in round_, in (miner, unit) order."""
        return [(*split_unit_key(k), self.record(k, WorkCommitment))
                for k in self.keys(COMMITMENT_PREFIX + round_bytes(round_), COMMITMENT_KEY_LEN)]

    def audit(self, round_: int, miner: bytes, unit: int, segment: int, auditor: bytes) -> AuditReport | None:
        return self.record(audit_key(round_, miner, unit, segment, auditor), AuditReport)

    def round_audits(self, round_: int) -> list[tuple[bytes, int, int, bytes]]:
        """(miner, unit, segment, auditor) of every audit report of round_, in that order."""
        return [split_audit_key(k) for k in self.keys(AUDIT_PREFIX + round_bytes(round_), AUDIT_KEY_LEN)]

    def unit_audits(self, round_: int, miner: bytes, unit: int) -> list[tuple[int, bytes]]:
        """(segment, auditor) of every audit report on one unit: a scan of its keys only."""
        prefix = commitment_key(round_, miner, unit)[1:]
        return [split_audit_key(k)[2:] for k in self.keys(AUDIT_PREFIX + prefix, AUDIT_KEY_LEN)]

    def unit_withheld_claims(self, round_: int, miner: bytes, unit: int) -> list[tuple[int, bytes]]:
        """(segment, auditor) of every withheld claim on one unit: a scan of its keys only."""
        prefix = commitment_key(round_, miner, unit)[1:]
        return [split_audit_key(k)[2:] for k in self.keys(WITHHELD_PREFIX + prefix, WITHHELD_KEY_LEN)]

    def round_withheld_claims(self, round_: int) -> list[tuple[bytes, int, int, bytes]]:
        """(miner, unit, segment, auditor) of every withheld-data claim of round_."""
        return [split_audit_key(k) for k in self.keys(WITHHELD_PREFIX + round_bytes(round_), WITHHELD_KEY_LEN)]

    def round_disputes(self, round_: int) -> list[tuple[bytes, int, int, bytes]]:
        """(miner, unit, segment, auditor) of every disputed audit report of round_."""
        return [split_audit_key(k) for k in self.keys(DISPUTE_PREFIX + round_bytes(round_), DISPUTE_KEY_LEN)]

    def unit_disputes(self, round_: int, miner: bytes, unit: int) -> list[tuple[int, bytes]]:
        """(segment, auditor) of every disputed report on one unit: a scan of its keys only."""
        prefix = commitment_key(round_, miner, unit)[1:]
        return [split_audit_key(k)[2:] for k in self.keys(DISPUTE_PREFIX + prefix, DISPUTE_KEY_LEN)]

    def dispute(self, round_: int, miner: bytes, unit: int, segment: int, auditor: bytes) -> DisputeRecord | None:
        return self.record(dispute_key(round_, miner, unit, segment, auditor), DisputeRecord)

    def standing_reports(self, round_: int, miner: bytes, unit: int) -> list[tuple[int, bytes, AuditReport]]:
        """(segment, auditor, report) of every report on one unit that is not disputed."""
        disputed = set(self.unit_disputes(round_, miner, unit))
        return [(segment, auditor, self.audit(round_, miner, unit, segment, auditor))
                for segment, auditor in self.unit_audits(round_, miner, unit) if (segment, auditor) not in disputed]

    def round_fallback_openings(self, round_: int) -> list[tuple[bytes, int, int, bytes]]:
        """(miner, unit, segment, claimer or disputed auditor) of every withheld claim and
        disputed report of round_: what opens a unit to fallback audits."""
        return self.round_withheld_claims(round_) + self.round_disputes(round_)

    def round_delta_claims(self, round_: int) -> list[tuple[bytes, int, bytes]]:
        """(miner, unit, validator) of every withheld-delta claim of round_."""
        return [(*split_unit_key(k), k[COMMITMENT_KEY_LEN:])
                for k in self.keys(DELTA_CLAIM_PREFIX + round_bytes(round_), DELTA_CLAIM_KEY_LEN)]

    def fraud_record(self, round_: int, miner: bytes, unit: int) -> FraudRecord | None:
        return self.record(fraud_key(round_, miner, unit), FraudRecord)

    def equivocation(self, validator: bytes) -> EquivocationRecord | None:
        """When validator was last punished for equivocation, if ever."""
        return self.record(equivocation_key(validator), EquivocationRecord)

    def work_count(self, epoch: int, miner: bytes) -> int:
        """miner's accepted units in epoch."""
        count = self.record(work_count_key(epoch, miner), WorkCount)
        return count.units if count is not None else 0

    def epoch_work(self, epoch: int) -> dict[bytes, int]:
        """Accepted units by miner in epoch, for every miner with any."""
        prefix = WORK_COUNT_PREFIX + round_bytes(epoch)
        return {k[len(prefix):]: self.record(k, WorkCount).units
                for k in self.keys(prefix, WORK_COUNT_KEY_LEN)}
