"""Evidence that an auditor re-executed a segment (DESIGN.md §2, docs/security.md §4).

A passing audit that only names the committed leaf proves nothing: the leaves file
gives every leaf away.  So each segment has a secret only its replay produces, the
digest of the clipped gradient of its last step (what AdamW consumed).  The miner
commits to a lock over each segment's digest; the auditor's report carries its
digest bound to its own key, so another auditor cannot copy it from a report; and
the miner, who holds every digest, disputes a report whose evidence is wrong, for a
bounty out of that auditor's bond.
"""
from __future__ import annotations

import hashlib

import numpy as np

LOCK_DOMAIN = b"uponode/evidence-lock/v1\x00"
REPORT_DOMAIN = b"uponode/audit-evidence/v1\x00"


def gradient_digest(grads: np.ndarray) -> bytes:
    """SHA-256 of a host float32 gradient's little-endian bytes: bit-exact, like the state."""
    return hashlib.sha256(np.ascontiguousarray(grads, dtype="<f4").data).digest()  # no copy


def evidence_lock(digest: bytes) -> bytes:
    """What a commitment holds for a segment: it names the digest without revealing it."""
    return hashlib.sha256(LOCK_DOMAIN + digest).digest()


def report_evidence(auditor: bytes, digest: bytes) -> bytes:
    """What auditor's report carries for a segment whose gradient digest is digest."""
    return hashlib.sha256(REPORT_DOMAIN + auditor + digest).digest()
