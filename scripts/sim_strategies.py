"""Expected value of cheating (issue 12; DESIGN.md §2, "Cheating never pays"): each
rational strategy played for many rounds through the real round rules, against an
honest twin that commits the same number of units in the same rounds.

    python scripts/sim_strategies.py [--rounds 10000] [--strategies all | name,name]
        [--seed 1] [--cost-fraction 0.5] [--recheck 0] [--jobs 2]

Prints one JSON object per strategy (rounds, mean profit per round against the honest
twin, its standard error, the fraction of rounds the cheat was punished), then one line
with all of them; the Markdown table for BENCHMARKS.md goes to stderr.

What is real: the devnet genesis (economics, training, schedule, its public validator
key), a ChainState kept in a LevelDB ChainStore (one synced batch per round), and each
round played as Transitions at the schedule's heights: every record (bonds,
registrations, commitments, audit reports, fraud proofs, withheld and delta claims) is a
signed transaction applied by node.state.tx_rules.apply_tx, the challenge's segments and
auditors come from node.uPoW.assignment, and node.state.round_close.close_round decides
every unit's outcome, pays the round and slashes.  A transaction the rules refuse stops
the run with the rule's reason.

What is modelled:
- the model is not the subject: the WorkOracle keeps a fixed model root and loss, and
  confirms a fraud proof when the simulation faked the segment it names;
- each round's start hash and its two chooser seeds (a 4-validator committee of
  equal power takes two choosers) are drawn at random (seeded) in place of the block
  hash and the choosers' beacons;
- parties: four honest miners (one of them the twin), one adversary miner, one unit
  each; five registered auditors and the genesis validator (the committee, the
  proposer and an eligible auditor), six audit seats in all;
- compute: an honest unit costs C = cost_fraction x (the unit pool / the miners), the
  honest unit reward scaled; a segment (one step) costs C / segments, to train or to
  replay; faking a segment saves its step;
- an honest auditor audits as node.verify.auditor does: claims the challenged segments
  whose data it cannot fetch (in the claim window), otherwise replays them in order and
  sends a fraud proof at the first mismatch, or reports them all passing;
- a lazy auditor passes every challenged segment without fetching or replaying, so
  its evidence is a guess; a colluding auditor passes its coalition's units with the
  evidence their miner hands it, and audits the others honestly; nobody else re-checks
  a passed segment unless --recheck gives a chance that the validator does (and sends
  the fraud proof) within the window;
- a miner outside the adversaries that did not fake disputes every report on its unit
  whose evidence is wrong (in the claim window), and the validator then audits the
  disputed segments as a fallback auditor;
- the chooser rows: the adversary's side is one of the round's two choosers one round
  in 2 (the first two proposers after the challenge block, known in advance), knows its
  own seed (its beacon) before the miner commits, and fakes only then, only segments
  its own seed does not draw; the other chooser is honest (records.ChallengeRecord);
- the committee stays the honest genesis validator: simulated rounds are numbered so
  that none ends an epoch (rotation by verified work only ranks cheats lower), and the
  validator claims a delta withheld when it cannot fetch it;
- a slashed party bonds again to the minimum at the next round (a fresh bond at stake),
  so every round is alike; profit = change of balance + bond - compute.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import pathlib
import random
import statistics
import sys
import tempfile
import time

from node.state.chain_state import ChainState
from node.state.records import (AUDIT_KEY_LEN, AUDIT_PREFIX, COMMITMENT_KEY_LEN, COMMITMENT_PREFIX,
                                DELTA_CLAIM_KEY_LEN, DELTA_CLAIM_PREFIX, DISPUTE_KEY_LEN, DISPUTE_PREFIX,
                                FRAUD_PREFIX, WITHHELD_KEY_LEN,
                                WITHHELD_PREFIX, WORK_COUNT_KEY_LEN, WORK_COUNT_PREFIX, ChallengeRecord,
                                challenge_key, round_bytes, round_seed_key)
from node.state.round_close import close_round
from node.state.transition import Transition, TxError
from node.state.tx_rules import apply_tx
from node.storage.chainstore import ChainStore
from node.types.blocks import EMPTY_COMMIT, SLASHED, WITHHELD, RoundClose
from node.types.crypto import SigningKey, sha256
from node.types.genesis import BPS, Account, Genesis, load_genesis
from node.types.merkle import inclusion_proof, merkle_root
from node.types.transactions import (AuditReport, Bond, DeltaWithheld, EvidenceDispute, FraudProof, RegisterAuditor,
                                     RegisterMiner, SignedTx, WithheldClaim, WorkCommitment, sign_tx)
from node.uPoW.assignment import assign_unit, challenged_segments
from node.uPoW.evidence import evidence_lock, report_evidence
from node.uPoW.oracle import KERNEL_VERSION
from node.uPoW.rounds import RoundSchedule

VALIDATOR = SigningKey(sha256(b"uponode devnet validator 0"))  # public: genesis/README.md
HONEST_MINERS = ("honest-0", "honest-1", "honest-2", "twin")
ADVERSARY = "adversary"
AUDITORS = tuple(f"auditor-{i}" for i in range(5))
FUNDS = 10**15
MODEL_ROOT = sha256(b"uponode sim: the model")
LOSS_BITS = 0x40400000  # float32 3.0
HONEST, LAZY, COLLUDE = "honest", "lazy", "collude"
SELF, PAIR = "self", "pair"  # who is a chooser in the adversary's chooser rounds
CHOOSER_ROUNDS = 2  # a devnet validator is one of the first two proposers after the challenge one round in 2
COLLUDING_MEMBER = SigningKey(sha256(b"uponode sim colluding committee member")).public_key
HONEST_MEMBER = SigningKey(sha256(b"uponode sim honest committee member")).public_key
COMMITTEE_POWER = 4  # the devnet committee: four validators of power 1


class SimError(Exception):
    """The real rules refused a record the simulation wrote; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    fake: int = 0  # segments (never the last, always challenged) the adversary miner fakes
    withhold_fake: bool = False  # a challenged faked segment's data is withheld, not served
    withhold_delta: bool = False  # the delta goes to the auditor, then to nobody
    auditor_play: str = HONEST  # how the adversary's auditors play
    auditor_seats: int = 0  # how many of the five auditors are the adversary's
    choose: str = ""  # SELF or PAIR: the adversary fakes only in rounds where its side is a chooser

    @property
    def adversaries(self) -> tuple[str, ...]:
        seats = AUDITORS[:self.auditor_seats]
        return seats if self.auditor_play == LAZY else (ADVERSARY, *seats)

    @property
    def peers(self) -> tuple[str, ...]:
        """Honest parties in the adversaries' roles, in the same world."""
        seats = AUDITORS[len(AUDITORS) - self.auditor_seats:]
        return seats if self.auditor_play == LAZY else ("twin", *seats)

    def honest_twin(self) -> Strategy:
        """The same world with the adversaries playing honestly (a lazy auditor's world
        keeps its faking miner, who is not the lazy auditor's to choose)."""
        return dataclasses.replace(self, fake=self.fake if self.auditor_play == LAZY else 0, withhold_fake=False,
                                   withhold_delta=False, auditor_play=HONEST)


SEGMENTS = load_genesis().training.segments  # the devnet's: the last is always challenged
ALL_BUT_LAST = SEGMENTS - 1
STRATEGIES = (
    Strategy("honest", "the adversary mines honestly (sanity: about 0)"),
    *(Strategy(f"fake-{k}", f"fakes {k} of {SEGMENTS} segments; a caught fake is proven fraud", fake=k)
      for k in (1, 4, ALL_BUT_LAST)),
    *(Strategy(f"fake-{k}-withhold", f"fakes {k} of {SEGMENTS} segments; withholds a challenged fake's data",
               fake=k, withhold_fake=True) for k in (1, 4, ALL_BUT_LAST)),
    Strategy("withhold-delta", "honest unit, delta withheld once its auditor attested it", withhold_delta=True),
    Strategy("lazy-auditor", "one auditor passes without replaying; every miner honest",
             auditor_play=LAZY, auditor_seats=1),
    Strategy("lazy-auditor-faker", f"one auditor passes without replaying; the adversary miner fakes 1 of {SEGMENTS}",
             fake=1, auditor_play=LAZY, auditor_seats=1),
    *(Strategy(f"sybil-fake-{k}", f"2 of 6 audit seats (1/3) pass the coalition's miner, which fakes {k} of {SEGMENTS}",
               fake=k, auditor_play=COLLUDE, auditor_seats=2) for k in (1, ALL_BUT_LAST)),
    Strategy("chooser-self-4", "a committee member that mines knows its own chooser seed in its chooser rounds "
             f"(1 in 2) and fakes 4 of {SEGMENTS} there, none its seed draws", fake=4, choose=SELF),
    Strategy("chooser-pair-4", "another committee member tells the adversary its chooser seed in its chooser "
             f"rounds (1 in 2); the adversary fakes 4 of {SEGMENTS} there, none that seed draws", fake=4, choose=PAIR),
)


class TruthOracle:
    """The WorkOracle: a fixed model, and fraud confirmed from what was really faked."""

    def __init__(self) -> None:
        self.faked: dict[bytes, frozenset[int]] = {}  # checkpoint root -> faked segments

    def genesis_model_root(self) -> bytes:
        return MODEL_ROOT

    def confirm_fraud(self, model_root, assignment, commitment: WorkCommitment, proof: FraudProof) -> bool:
        return proof.segment in self.faked.get(commitment.checkpoint_root, frozenset())

    def aggregate(self, model_root: bytes, delta_hashes: list[bytes], loss_bits: int,
                  round_: int) -> tuple[bytes, int]:
        return model_root, LOSS_BITS


class Party:
    def __init__(self, name: str, fee: int, key: SigningKey | None = None):
        self.name = name
        self.key = key or SigningKey(sha256(b"uponode sim party " + name.encode()))
        self.nonce = 0
        self.fee = fee  # what each of its transactions pays

    def tx(self, chain_id: str, payload) -> SignedTx:
        tx = sign_tx(self.key, chain_id, self.nonce, payload, self.fee)
        self.nonce += 1
        return tx


@dataclasses.dataclass
class Unit:
    miner: str
    leaves: list[bytes]
    commitment: WorkCommitment
    faked: frozenset[int]
    evidence: list[bytes]  # each segment's gradient digest, locked in the commitment
    withheld: frozenset[int] = frozenset()  # challenged segments whose data is not served


class Ledger:
    """The chain state over a LevelDB store; each block's changes come from one Transition."""

    def __init__(self, genesis: Genesis, directory: pathlib.Path, oracle: TruthOracle):
        self.genesis, self.oracle = genesis, oracle
        self.store = ChainStore.open(directory)
        self.state = ChainState.from_genesis(genesis, oracle.genesis_model_root())
        self.store.store_genesis_state(self.state.entries, self.state.root(), bytes.fromhex(genesis.hash))
        self.height = 0  # rounds committed to the store
        self.writes: dict[bytes, bytes | None] = {}
        self.tx_hashes: list[bytes] = []

    def block(self, height: int, prev_hash: bytes = bytes(32)) -> Transition:
        return Transition(self.state, self.genesis, height, prev_hash, EMPTY_COMMIT, VALIDATOR.public_key, self.oracle)

    def apply(self, t: Transition, txs: list[SignedTx]) -> None:
        for tx in txs:
            try:
                apply_tx(t, tx)
            except TxError as exc:
                raise SimError(f"height {t.height}: {type(tx.body.payload).__name__} refused: {exc}") from None
            self.tx_hashes.append(tx.hash)

    def commit(self, t: Transition) -> None:
        writes = t.writes
        self.state.apply_writes(writes)
        self.writes.update(writes)

    def end_round(self, close: RoundClose, forget: list[bytes]) -> None:
        """Drop the round's own records (no later close reads them, and the state's scans
        stay short), then store the round's changes in one synced batch."""
        deletes = {k: None for k in forget}
        self.state.apply_writes(deletes)
        self.writes.update(deletes)
        self.height += 1
        self.store.commit_block(self.height, sha256(b"uponode sim round" + round_bytes(close.round)),
                                close.encode(), b"", self.tx_hashes, self.writes, self.state.root())
        self.writes, self.tx_hashes = {}, []

    def stored_root(self) -> bytes:
        return ChainState(dict(self.store.state_items())).root()


class World:
    """One strategy's parties on one ledger, playing round after round."""

    def __init__(self, strategy: Strategy, directory: pathlib.Path, seed: str, cost_fraction: float,
                 recheck: float):
        self.strategy = strategy
        # one stream per kind of draw, so that a world and its honest twin draw alike
        self.chain_rng = random.Random(f"{seed}/chain")
        self.fake_rng = random.Random(f"{seed}/fakes")
        self.recheck_rng = random.Random(f"{seed}/recheck")
        self.recheck = recheck
        names = (*HONEST_MINERS, ADVERSARY, *AUDITORS)
        base = load_genesis()
        fee = base.economics.min_tx_fee
        self.parties = {name: Party(name, fee) for name in names}
        self.validator = Party("validator", fee, VALIDATOR)
        if base.validators[0].pub_key != VALIDATOR.public_key:
            raise SimError("the devnet genesis validator is not the public devnet key of genesis/README.md")
        self.genesis = dataclasses.replace(base, accounts=base.accounts + tuple(
            Account(p.key.public_key, FUNDS, 0) for p in self.parties.values()))
        self.training, self.economics = self.genesis.training, self.genesis.economics
        self.schedule = RoundSchedule.from_genesis(self.genesis)
        self.oracle = TruthOracle()
        self.ledger = Ledger(self.genesis, directory, self.oracle)
        self.miners = (*HONEST_MINERS, ADVERSARY)
        self.unit_cost = cost_fraction * self.economics.emission_per_round * self.economics.reward_units_bps / BPS \
            / len(self.miners)
        self.segment_cost = self.unit_cost / self.training.segments
        self.by_key = {p.key.public_key: p.name for p in self.parties.values()}
        self.by_key[VALIDATOR.public_key] = "validator"
        self._register()

    # -- setup and accounting

    def _register(self) -> None:
        e, chain_id = self.economics, self.genesis.chain_id
        txs = []
        for name in self.miners:
            txs += [self.parties[name].tx(chain_id, Bond(e.min_miner_bond)),
                    self.parties[name].tx(chain_id, RegisterMiner(units=1))]
        for name in AUDITORS:
            txs += [self.parties[name].tx(chain_id, Bond(e.min_auditor_bond)),
                    self.parties[name].tx(chain_id, RegisterAuditor())]
        t = self.ledger.block(1)
        self.ledger.apply(t, txs)
        self.ledger.commit(t)

    def _rebond(self) -> list[SignedTx]:
        """A party slashed last round bonds back to its minimum, to keep playing."""
        txs = []
        for name in (*self.miners, *AUDITORS):
            need = self.economics.min_miner_bond if name in self.miners else self.economics.min_auditor_bond
            short = need - self.ledger.state.account(self.parties[name].key.public_key).bond
            if short > 0:
                txs.append(self.parties[name].tx(self.genesis.chain_id, Bond(short)))
        return txs

    def _wealth(self, name: str) -> int:
        account = self.ledger.state.account(self.parties[name].key.public_key)
        return account.balance + account.bond

    def _bond(self, name: str) -> int:
        return self.ledger.state.account(self.parties[name].key.public_key).bond

    def play_of(self, auditor: str) -> str:
        return self.strategy.auditor_play if auditor in AUDITORS[:self.strategy.auditor_seats] else HONEST

    # -- one round

    def play_round(self, index: int) -> tuple[dict[str, float], bool]:
        """(each party's profit, whether an adversary was punished) of one round."""
        s, sched, chain_id = self.strategy, self.schedule, self.genesis.chain_id
        # the first round of an epoch, so that no close rotates the committee
        round_ = (index + 1) * self.genesis.consensus.epoch_rounds
        cost = dict.fromkeys(self.parties, 0.0)
        before = {name: self._wealth(name) for name in self.parties}

        # train: rebond, then every miner commits one unit
        start_hash = self.chain_rng.randbytes(32)
        t = self.ledger.block(sched.start_height(round_) + 1, start_hash)
        side_seed, honest_seed = self.chain_rng.randbytes(32), self.chain_rng.randbytes(32)
        known = side_seed if self._chooser_round(index) else None
        units = {name: self._unit(name, round_, start_hash, known) for name in self.miners}
        for name, unit in units.items():
            cost[name] += self.unit_cost - self.segment_cost * len(unit.faked)
        self.ledger.apply(t, self._rebond() + [self.parties[n].tx(chain_id, u.commitment) for n, u in units.items()])
        self.ledger.commit(t)
        staked = {name: self._bond(name) for name in self.parties}

        # challenge, then the audit window's first half: reports and fraud proofs
        t = self.ledger.block(sched.challenge_height(round_) + 1)
        challenge = self._challenge(index, t.challenge(round_).eligible, side_seed, honest_seed)
        t.put(challenge_key(round_), challenge)
        txs, claims, passed_fakes, reported = [], [], [], []
        for name, unit in units.items():
            key = self.parties[name].key.public_key
            draws = challenge.unit_challenge(key, 0, self.training)
            if s.withhold_fake and name == ADVERSARY:
                unit.withheld = frozenset(draws.segments) & unit.faked
            proven = False  # one fraud proof per unit: the first one slashes
            for auditor_key in draws.auditors:
                auditor = self.by_key[auditor_key]
                reports, fraud, missing, replayed = self._audit(auditor, unit, draws.segments_of(auditor_key))
                if auditor in cost:
                    cost[auditor] += self.segment_cost * replayed
                sender = self.parties.get(auditor, self.validator)
                guessed = self.play_of(auditor) == LAZY  # a colluder has the digests from its miner
                txs += [sender.tx(chain_id, self._report(round_, key, unit, seg, sender.key.public_key, guessed))
                        for seg in reports]
                reported += [(name, key, unit, seg, sender.key.public_key) for seg in reports]
                if fraud is not None and not proven:
                    txs.append(sender.tx(chain_id, self._fraud(round_, key, unit, fraud)))
                    proven = True
                claims += [sender.tx(chain_id, WithheldClaim(round_, key, 0, seg)) for seg in missing]
                passed_fakes += [(key, unit, seg) for seg in reports if seg in unit.faked]
        self.ledger.apply(t, txs)
        self.ledger.commit(t)

        # the claim window: withheld data and deltas, and a late re-check of passed fakes
        t = self.ledger.block(sched.claim_window(round_).start)
        if s.withhold_delta:
            claims.append(self.validator.tx(chain_id, DeltaWithheld(round_, self.parties[ADVERSARY].key.public_key, 0)))
        # a unit another draw's honest auditor already proved needs no second proof
        proven = {key for key, _, _ in passed_fakes if t.fraud_record(round_, key, 0) is not None}
        for key, unit, seg in passed_fakes:
            if key not in proven and self.recheck_rng.random() < self.recheck:
                claims.append(self.validator.tx(chain_id, self._fraud(round_, key, unit, seg)))
                proven.add(key)
        claims += self._disputes(round_, reported)
        self.ledger.apply(t, claims)
        self.ledger.commit(t)
        self._fallback_audits(round_, units)

        # the close, by the real rules
        t = self.ledger.block(sched.close_height(round_))
        (close,) = close_round(t)
        self.ledger.commit(t)
        self.ledger.end_round(close, self._round_keys(round_))

        profit = {name: self._wealth(name) - before[name] - cost[name] for name in self.parties}
        adversary_key = self.parties[ADVERSARY].key.public_key
        punished = any(self._bond(n) < staked[n] for n in s.adversaries) or (
            ADVERSARY in s.adversaries
            and any(u.miner == adversary_key and u.status in (SLASHED, WITHHELD) for u in close.units))
        return profit, punished

    def _disputes(self, round_: int, reported: list[tuple[str, bytes, Unit, int, bytes]]) -> list[SignedTx]:
        """Each miner outside the adversaries disputes the reports on its unit whose
        evidence is not its digest's."""
        txs = []
        for name, key, unit, seg, auditor in reported:
            report = self.ledger.state.audit(round_, key, 0, seg, auditor)
            # a faking miner lets a lazy pass stand: a fallback audit might catch its fake
            if (name in self.strategy.adversaries or unit.faked
                    or report.evidence == report_evidence(auditor, unit.evidence[seg])):
                continue
            txs.append(self.parties[name].tx(self.genesis.chain_id, EvidenceDispute(
                round_, key, 0, seg, auditor, unit.evidence[seg])))
        return txs

    def _fallback_audits(self, round_: int, units: dict[str, Unit]) -> None:
        """The validator audits each disputed segment as a fallback auditor, in the
        block after the disputes (still in the audit window), unless it has reported it."""
        height = self.schedule.claim_window(round_).start + 1
        if height >= self.schedule.close_height(round_):
            raise SimError("no room for fallback audits after the disputes")
        t = self.ledger.block(height)
        txs = []
        for name, unit in units.items():
            key = self.parties[name].key.public_key
            for seg in sorted({seg for seg, _ in t.unit_disputes(round_, key, 0)}):
                if t.audit(round_, key, 0, seg, VALIDATOR.public_key) is not None:
                    continue
                if seg in unit.faked:
                    txs.append(self.validator.tx(self.genesis.chain_id, self._fraud(round_, key, unit, seg)))
                    break
                txs.append(self.validator.tx(self.genesis.chain_id, self._report(
                    round_, key, unit, seg, VALIDATOR.public_key, False)))
        self.ledger.apply(t, txs)
        self.ledger.commit(t)

    def _chooser_round(self, index: int) -> bool:
        """Whether the adversary's side chooses this round's seed (known in advance)."""
        return bool(self.strategy.choose) and index % CHOOSER_ROUNDS == 0

    def _challenge(self, index: int, eligible: tuple[bytes, ...], side_seed: bytes,
                   honest_seed: bytes) -> ChallengeRecord:
        """A random challenge of two choosers, the record the ledger keeps: in the
        adversary's chooser rounds the first is its side (the adversary itself, or a
        member colluding with it) with side_seed, which it knew when it committed."""
        side = (self.parties[ADVERSARY].key.public_key if self.strategy.choose == SELF else COLLUDING_MEMBER)
        first = side if self._chooser_round(index) else VALIDATOR.public_key
        return ChallengeRecord(eligible, (first, HONEST_MEMBER), (side_seed, honest_seed), 2, COMMITTEE_POWER)

    def _unit(self, name: str, round_: int, start_hash: bytes, known: bytes | None) -> Unit:
        """The unit name commits; the adversary fakes, in a chooser row only where its side
        knows a seed (known), and then none of the segments that seed draws."""
        key = self.parties[name].key.public_key
        seed = sha256(b"uponode sim unit" + round_bytes(round_) + key)
        leaves = [sha256(seed + i.to_bytes(4, "big")) for i in range(self.training.segments + 1)]
        evidence = [sha256(seed + b"gradient" + i.to_bytes(4, "big")) for i in range(self.training.segments)]
        commitment = WorkCommitment(
            round=round_, unit=0, shard=assign_unit(start_hash, key, 0).shard,
            start_root=self.ledger.state.model().root, checkpoint_root=merkle_root(leaves),
            checkpoint_count=len(leaves), leaves_hash=sha256(b"".join(leaves)), delta_hash=sha256(seed + b"delta"),
            loss_trace=(LOSS_BITS,) * self.training.steps_per_unit, kernel_version=KERNEL_VERSION,
            evidence_locks=tuple(evidence_lock(d) for d in evidence))
        faked = frozenset()
        if name == ADVERSARY and self.strategy.fake and (known is not None or not self.strategy.choose):
            # never the last segment: every unit's audit replays it
            drawn = set(challenged_segments(known, key, 0, self.training.segments, self.training.audit_segments)
                        if known is not None else ())
            candidates = [seg for seg in range(self.training.segments - 1) if seg not in drawn]
            faked = frozenset(self.fake_rng.sample(candidates, self.strategy.fake))
        self.oracle.faked[commitment.checkpoint_root] = faked
        return Unit(name, leaves, commitment, faked, evidence)

    def _audit(self, auditor: str, unit: Unit, challenged: tuple[int, ...]
               ) -> tuple[tuple[int, ...], int | None, tuple[int, ...], int]:
        """(segments reported passing, segment proven fraudulent, segments claimed withheld,
        segments replayed) of auditor's audit of unit."""
        play = self.play_of(auditor)
        if play == LAZY or (play == COLLUDE and unit.miner in self.strategy.adversaries):
            return challenged, None, (), 0
        missing = tuple(seg for seg in challenged if seg in unit.withheld)
        if missing:
            return (), None, missing, 0
        for replayed, seg in enumerate(challenged, 1):
            if seg in unit.faked:
                return (), seg, (), replayed
        return challenged, None, (), len(challenged)

    @staticmethod
    def _report(round_: int, miner: bytes, unit: Unit, seg: int, auditor: bytes, guessed: bool) -> AuditReport:
        digest = sha256(b"a guess") if guessed else unit.evidence[seg]
        return AuditReport(round=round_, miner=miner, unit=0, segment=seg, result_hash=unit.leaves[seg + 1],
                           result_proof=tuple(inclusion_proof(unit.leaves, seg + 1)),
                           evidence=report_evidence(auditor, digest))

    @staticmethod
    def _fraud(round_: int, miner: bytes, unit: Unit, seg: int) -> FraudProof:
        return FraudProof(round=round_, miner=miner, unit=0, segment=seg, start_hash=unit.leaves[seg],
                          start_proof=tuple(inclusion_proof(unit.leaves, seg)),
                          claimed_end_hash=unit.leaves[seg + 1],
                          end_proof=tuple(inclusion_proof(unit.leaves, seg + 1)),
                          computed_end_hash=sha256(b"replayed" + unit.leaves[seg]))

    def _round_keys(self, round_: int) -> list[bytes]:
        state, r = self.ledger.state, round_bytes(round_)
        keys = [round_seed_key(round_), challenge_key(round_)]
        for prefix, length in ((COMMITMENT_PREFIX, COMMITMENT_KEY_LEN), (AUDIT_PREFIX, AUDIT_KEY_LEN),
                               (WITHHELD_PREFIX, WITHHELD_KEY_LEN), (DELTA_CLAIM_PREFIX, DELTA_CLAIM_KEY_LEN),
                               (DISPUTE_PREFIX, DISPUTE_KEY_LEN),
                               (FRAUD_PREFIX, COMMITMENT_KEY_LEN)):
            keys += state.keys(prefix + r, length)
        epoch = round_ // self.genesis.consensus.epoch_rounds
        keys += state.keys(WORK_COUNT_PREFIX + round_bytes(epoch), WORK_COUNT_KEY_LEN)
        self.oracle.faked.clear()
        return keys

    def check_supply(self) -> None:
        """balances + bonds = genesis + emitted - burned, in memory and as stored."""
        state = self.ledger.state
        held = sum(state.account(k).balance + state.account(k).bond for k in self.by_key)
        supply = state.supply()
        if held != supply.genesis + supply.emitted - supply.burned:
            raise SimError(f"supply broken: holdings {held} != {supply}")
        if self.ledger.stored_root() != state.root():
            raise SimError("the LevelDB store's state does not hash to the simulated state's root")


def run_strategy(args: tuple[Strategy, int, int, float, float]) -> dict:
    """Play strategy and its honest twin world, drawing alike, for rounds rounds."""
    strategy, rounds, seed, cost_fraction, recheck = args
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="uponode-sim-", dir=parent) as directory:
        key = f"{seed}/{strategy.name}"
        world = World(strategy, pathlib.Path(directory) / "cheat", key, cost_fraction, recheck)
        twin = World(strategy.honest_twin(), pathlib.Path(directory) / "twin", key, cost_fraction, recheck)
        cheat_profit, honest_profit, vs_twin, vs_peer, punished = [], [], [], [], 0
        for i in range(rounds):
            profit, caught = world.play_round(i)
            honest, _ = twin.play_round(i)
            cheat_profit.append(sum(profit[n] for n in strategy.adversaries))
            honest_profit.append(sum(honest[n] for n in strategy.adversaries))
            vs_twin.append(cheat_profit[-1] - honest_profit[-1])
            vs_peer.append(cheat_profit[-1] - sum(profit[n] for n in strategy.peers))
            punished += caught
        for w in (world, twin):
            w.check_supply()
            w.ledger.store.close()
    return {
        "strategy": strategy.name, "summary": strategy.summary, "rounds": rounds,
        "mean_profit_vs_honest": statistics.fmean(vs_twin), "stderr": _stderr(vs_twin),
        "caught_fraction": punished / rounds,
        "adversary_mean_profit": statistics.fmean(cheat_profit), "honest_mean_profit": statistics.fmean(honest_profit),
        "mean_profit_vs_peer": statistics.fmean(vs_peer), "peer_stderr": _stderr(vs_peer),
        "unit_cost": world.unit_cost,
    }


def _stderr(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def markdown(results: list[dict]) -> str:
    rows = ["| strategy | what the adversary does | rounds | profit / round vs honest twin (± s.e.) "
            "| vs honest peer, same world (± s.e.) | punished | verdict |", "|---|---|---|---|---|---|---|"]
    for r in results:
        mean, se = r["mean_profit_vs_honest"], r["stderr"]
        if r["strategy"] == "honest":
            verdict = "sanity"
        elif mean + 2 * se < 0:
            verdict = "negative"
        elif mean - 2 * se > 0:
            verdict = "**POSITIVE**"
        else:
            verdict = "within 2 s.e. of 0"
        rows.append(f"| {r['strategy']} | {r['summary']} | {r['rounds']:,} | {mean:,.0f} ± {se:,.0f} "
                    f"| {r['mean_profit_vs_peer']:,.0f} ± {r['peer_stderr']:,.0f} | {r['caught_fraction']:.4f} "
                    f"| {verdict} |")
    return "\n".join(rows)


def _machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), cpu)
    return {"nproc": os.cpu_count(), "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10_000, help="rounds per strategy")
    parser.add_argument("--strategies", default="all", help="comma-separated names, or all: "
                        + ", ".join(s.name for s in STRATEGIES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cost-fraction", type=float, default=0.5,
                        help="an honest unit's compute cost as a fraction of its reward when all miners are honest")
    parser.add_argument("--recheck", type=float, default=0.0,
                        help="chance that someone re-checks a passed faked segment and proves it (0: worst case)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    by_name = {s.name: s for s in STRATEGIES}
    names = list(by_name) if args.strategies == "all" else args.strategies.split(",")
    unknown = [n for n in names if n not in by_name]
    if unknown:
        parser.error(f"unknown strategies: {', '.join(unknown)}")
    started = time.perf_counter()
    work = [(by_name[n], args.rounds, args.seed, args.cost_fraction, args.recheck) for n in names]
    results = []
    with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(work))) as pool:
        for result in pool.imap(run_strategy, work):
            print(json.dumps(result), flush=True)
            results.append(result)
    elapsed = time.perf_counter() - started
    print(markdown(results), file=sys.stderr)
    print(f"{len(results)} strategies x {args.rounds} rounds in {elapsed:.0f} s", file=sys.stderr)
    print(json.dumps({"rounds": args.rounds, "seed": args.seed, "cost_fraction": args.cost_fraction,
                      "recheck": args.recheck, "seconds": round(elapsed, 1), "machine": _machine(),
                      "strategies": results}))


if __name__ == "__main__":
    main()
