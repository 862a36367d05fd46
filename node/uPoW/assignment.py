"""Work assignment and challenges, drawn from chain randomness (DESIGN.md §2).

A unit's seed is H(round start block hash || miner key || unit index): it fixes the
shard and the data stream (seed and batch order), so a miner can neither pick its
data nor copy another miner's.  Challenges come from the hash of the round's
challenge block, finalized after every commitment: which segments of each unit are
re-executed (a few random ones and always the last), and which auditors check them.
"""
from __future__ import annotations

import dataclasses
import hashlib

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
