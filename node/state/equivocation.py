"""Double-sign evidence (docs/security.md §9): what evidence counts, what it costs the
validator, and how long a validator answers for its votes.

Evidence counts for consensus.evidence_window_blocks blocks after the height of the double
vote, judged against the committee that decided that height, which the state's
committee history answers (records.CommitteeHistory): leaving the committee at a
rotation clears no one.  The offender loses economics.double_sign_slash_bps of its
bond and its seat from the next block on, and cannot re-enter at a rotation for a window
after; a validator seated at any height of the last window cannot unbond, so its bond
is still there when late evidence arrives.
"""
from __future__ import annotations

from node.state.records import EquivocationRecord, equivocation_key
from node.state.transition import Transition, TxError
from node.types.transactions import DoubleSignEvidence


def double_sign(t: Transition, sender: bytes, p: DoubleSignEvidence) -> None:
    """Slash and unseat the validator that signed both votes, paying sender the bounty.

    The votes may be of the height this block decides: a node reports the double votes
    of the height in progress, and a later consensus round's proposer may put them in
    that height's block; its committee is the current one."""
    a, b = p.first, p.second
    if a.validator != b.validator:
        raise TxError("not_equivocation", "the votes are from different validators")
    if (a.body.kind, a.body.height, a.body.round) != (b.body.kind, b.body.height, b.body.round):
        raise TxError("not_equivocation", "the votes are for different steps")
    if a.body.block_hash == b.body.block_hash:
        raise TxError("not_equivocation", "the votes are for the same block")
    if not (a.signature_valid(t.chain_id) and b.signature_valid(t.chain_id)):
        raise TxError("bad_proof", "a vote's signature does not verify")
    validator, height, window = a.validator, a.body.height, t.consensus.evidence_window_blocks
    if height > t.height:
        raise TxError("evidence_too_new", f"votes at height {height}, beyond this block's {t.height}")
    if t.height - height > window:
        raise TxError("evidence_expired", f"votes at height {height} are more than {window} blocks old")
    if not t.committee_at(height).power_of(validator):
        raise TxError("not_in_committee", f"the validator was not in the committee that decided height {height}")
    punished = t.equivocation(validator)
    if punished is not None and height <= punished.height:
        # one punishment covers every double vote up to it: a validator whose key signs
        # twice does so at many steps, and each must not cost it (and pay a reporter) again
        raise TxError("duplicate_evidence",
                      f"the validator was punished at height {punished.height} for its votes up to it")
    t.put(equivocation_key(validator), EquivocationRecord(t.height))
    t.slash(validator, t.economics.double_sign_slash_bps, sender, t.economics.fraud_bounty_bps)
    committee = t.committee()
    remaining = committee.without(validator)
    if remaining != committee:
        t.change_committee(remaining)


def require_unbondable(t: Transition, validator: bytes) -> None:
    """TxError unless validator's bond is free of its votes: it is not seated, and was
    seated at no height that evidence may still name."""
    if t.committee().power_of(validator):
        raise TxError("committee_member", "a committee member cannot unbond while seated")
    last = max((c.height for c in t.committee_changes() if c.committee.power_of(validator)), default=None)
    window = t.consensus.evidence_window_blocks
    if last is not None and t.height - last <= window:
        raise TxError("evidence_window", f"the sender was in the committee at height {last}: "
                                         f"its bond may leave from height {last + window + 1}")


def barred_from_committee(t: Transition, validator: bytes) -> bool:
    """Whether validator was punished for equivocation within the evidence window."""
    punished = t.equivocation(validator)
    return punished is not None and t.height - punished.height <= t.consensus.evidence_window_blocks
