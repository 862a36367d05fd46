"""Work assignment and challenges, drawn from chain randomness (DESIGN.md §2).

A unit's seed is H(round start block hash || miner key || unit index): it fixes the
shard and the data stream (seed and batch order), so a miner can neither pick its
data nor copy another miner's.  Challenges come from the round's challenge seed:
which segments of each unit are re-executed (a few random ones and always the last),
and which auditors check them.

The challenge seed hashes the beacons of the precommits that finalized the challenge
block (finalized after every commitment), as the next block carries them.  A beacon is
a VRF output, unique to its validator and the height and unknown until that validator
precommits there; so the challenge block's proposer, whatever header or transactions
it tries, does not change the seed, nor can a miner know it when it commits.  The one
choice left is the next proposer's: which quorum of precommits its block carries
(docs/security.md quantifies it).
"""
from __future__ import annotations

import dataclasses
import hashlib

from node.types.blocks import CommitCertificate
from node.types.votes import beacon_output

CHALLENGE_DOMAIN = b"uponode/challenge\x00"
UNIT_DOMAIN = b"uponode/unit\x00"
SEGMENT_DOMAIN = b"uponode/segment\x00"
AUDITOR_DOMAIN = b"uponode/auditor\x00"
SHARDS = 1  # the devnet model is one shard: data-parallel DiLoCo (DESIGN.md §2, Shards)


@dataclasses.dataclass(frozen=True)
class UnitAssignment:
    seed: bytes
    shard: int
    data_seed: int  # the training stream: batch i of the unit is train_batch(data_seed, i)


def assign_unit(round_start_hash: bytes, miner: bytes, unit: int) -> UnitAssignment:
    seed = hashlib.sha256(UNIT_DOMAIN + round_start_hash + miner + unit.to_bytes(4, "big")).digest()
    return UnitAssignment(seed=seed, shard=int.from_bytes(seed[:4], "big") % SHARDS,
                          data_seed=int.from_bytes(seed[8:16], "big"))


def challenge_seed(chain_id: str, commit: CommitCertificate) -> bytes:
    """H(domain || height || the signers' beacon outputs, in key order) for the commit of
    the challenge block; ValueError if a beacon does not verify (a commit that
    verify_commit accepted always does)."""
    outputs = []
    for sig in sorted(commit.signatures, key=lambda sig: sig.validator):
        output = beacon_output(chain_id, commit.height, sig.validator, sig.beacon)
        if output is None:
            raise ValueError(f"the beacon of {sig.validator.hex()[:16]} does not verify")
        outputs.append(output)
    return hashlib.sha256(CHALLENGE_DOMAIN + commit.height.to_bytes(8, "big") + b"".join(outputs)).digest()


def _draw(domain: bytes, challenge_hash: bytes, miner: bytes, unit: int, index: int) -> int:
    digest = hashlib.sha256(domain + challenge_hash + miner + unit.to_bytes(4, "big")
                            + index.to_bytes(4, "big")).digest()
    return int.from_bytes(digest[:8], "big")


def challenged_segments(challenge_hash: bytes, miner: bytes, unit: int, n_segments: int,
                        draws: int) -> tuple[int, ...]:
    """The segments of a unit to re-execute, ascending: `draws` uniform draws (with
    replacement, so a unit with a fraction f of bad segments escapes with probability
    (1 - f)^draws) and the last segment, which also checks the delta."""
    chosen = {_draw(SEGMENT_DOMAIN, challenge_hash, miner, unit, i) % n_segments
              for i in range(draws)}
    chosen.add(n_segments - 1)
    return tuple(sorted(chosen))


def assigned_auditors(challenge_hash: bytes, miner: bytes, unit: int,
                      eligible: list[bytes], count: int) -> tuple[bytes, ...]:
    """Up to count distinct auditors for a unit from eligible (never the miner itself),
    in draw order."""
    pool = sorted(a for a in set(eligible) if a != miner)
    chosen: list[bytes] = []
    index = 0
    while pool and len(chosen) < count:
        chosen.append(pool.pop(_draw(AUDITOR_DOMAIN, challenge_hash, miner, unit, index) % len(pool)))
        index += 1
    return tuple(chosen)
