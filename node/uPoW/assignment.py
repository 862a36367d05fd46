"""Work assignment and challenges, drawn from chain randomness (DESIGN.md §2).

A unit's seed is H(round start block hash || miner key || unit index): it fixes the
shard and the data stream (seed and batch order), so a miner can neither pick its
data nor copy another miner's.  Challenges come from the round's chooser seeds
(node.state.records.ChallengeRecord): each seed draws which segments of each unit are
re-executed (a few random ones and always the last) and which auditors check them, and
a unit's challenge is every seed's draw together.

A chooser's seed hashes the beacon of its own precommit, as the block it proposes
carries it.  A beacon is a VRF output: unique to its validator and the height, and
unknown to anyone else until that validator precommits there.  So no proposer can
grind a seed by what it puts in a block or which quorum it carries, and an honest
chooser's seed is one no miner knows when it commits and no coalition can steer.  A
dishonest chooser knows its own draw in advance, which is why a challenge takes
choosers until one of them is surely honest (docs/security.md §5).
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from node.types.blocks import CommitCertificate
from node.types.genesis import TrainingConfig
from node.types.votes import beacon_output
from node.uPoW.data import UnitStream

CHALLENGE_DOMAIN = b"uponode/challenge\x00"
UNIT_DOMAIN = b"uponode/unit\x00"
SEGMENT_DOMAIN = b"uponode/segment\x00"
AUDITOR_DOMAIN = b"uponode/auditor\x00"
SHARDS = 1  # the devnet model is one shard: data-parallel DiLoCo (DESIGN.md §2, Shards)


@dataclasses.dataclass(frozen=True)
class UnitAssignment:
    seed: bytes
    shard: int
    data_seed: int

    def stream(self, training: TrainingConfig, round_: int, step: int = 0) -> UnitStream:
        """The unit's training stream: its data seed, from the round's first global step,
        at AdamW step step (its commitment's start_step)."""
        return UnitStream(self.data_seed, round_ * training.steps_per_unit, step)


def assign_unit(round_start_hash: bytes, miner: bytes, unit: int) -> UnitAssignment:
    seed = hashlib.sha256(UNIT_DOMAIN + round_start_hash + miner + unit.to_bytes(4, "big")).digest()
    return UnitAssignment(seed=seed, shard=int.from_bytes(seed[:4], "big") % SHARDS,
                          data_seed=int.from_bytes(seed[8:16], "big"))


def chooser_seed(chain_id: str, commit: CommitCertificate, proposer: bytes) -> bytes | None:
    """H(domain || height || proposer || beacon output) of proposer's own precommit in the
    commit its block carries; None if the commit lacks it.  ValueError if the beacon does
    not verify (a commit that verify_commit accepted always does)."""
    sig = next((sig for sig in commit.signatures if sig.validator == proposer), None)
    if sig is None:
        return None
    output = beacon_output(chain_id, commit.height, proposer, sig.beacon)
    if output is None:
        raise ValueError(f"the beacon of {proposer.hex()[:16]} does not verify")
    return hashlib.sha256(CHALLENGE_DOMAIN + commit.height.to_bytes(8, "big") + proposer + output).digest()


@dataclasses.dataclass(frozen=True)
class Draw:
    """One seed's draw for a unit: the segments to re-execute and who re-executes them."""
    segments: tuple[int, ...]
    auditors: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True)
class UnitChallenge:
    """Every seed's draw for one unit.  An auditor re-executes the segments of the draws
    that name it, so an honest chooser's draw is checked by its own auditors and no
    other draw's auditor can stand in for them."""
    draws: tuple[Draw, ...]

    @property
    def segments(self) -> tuple[int, ...]:
        return tuple(sorted({s for draw in self.draws for s in draw.segments}))

    @property
    def auditors(self) -> tuple[bytes, ...]:
        """The assigned auditors, in draw order, each once."""
        return tuple(dict.fromkeys(a for draw in self.draws for a in draw.auditors))

    def segments_of(self, auditor: bytes) -> tuple[int, ...]:
        return tuple(sorted({s for draw in self.draws if auditor in draw.auditors for s in draw.segments}))

    def covered(self, reports: set[tuple[int, bytes]]) -> bool:
        """Whether every draw's segments were each reported by one of its auditors."""
        return all(any((s, a) in reports for a in draw.auditors)
                   for draw in self.draws for s in draw.segments)


def unit_segments(seeds: Sequence[bytes], miner: bytes, unit: int, n_segments: int,
                  draws: int) -> tuple[int, ...]:
    """The segments of a unit that any seed challenges, ascending."""
    return tuple(sorted({s for seed in seeds for s in challenged_segments(seed, miner, unit, n_segments, draws)}))


def unit_challenge(seeds: Sequence[bytes], miner: bytes, unit: int, training: TrainingConfig,
                   eligible: Sequence[bytes]) -> UnitChallenge:
    """The unit's challenge: each seed draws training.audit_segments segments (and the
    last) and training.auditors_per_unit auditors from eligible."""
    return UnitChallenge(tuple(
        Draw(challenged_segments(seed, miner, unit, training.segments, training.audit_segments),
             assigned_auditors(seed, miner, unit, list(eligible), training.auditors_per_unit))
        for seed in seeds))


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
