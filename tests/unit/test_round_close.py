"""A whole training round through the chain: commitments, audits and a fraud proof,
then the closing block, which every validator recomputes (outcomes, model, payments,
committee) and refuses if any part differs.  The oracle is a deterministic fake: the
subject here is the ledger's bookkeeping, not training."""
import dataclasses

import pytest

from node.types import genesis as g
from node.types.blocks import (ACCEPTED, NO_CLOSE, PAID_AS_PROPOSER, PAID_FOR_AUDITS, PAID_FOR_UNITS, REJECTED,
                         SLASHED, EMPTY_COMMIT, CommitteeMember, Payment, UnitOutcome, certificate_from_precommits,
                         close_hash)
from node.state.chain import Chain, InvalidBlock
from node.types.crypto import SigningKey, sha256
from node.state.chain_state import ChainState
from node.state.records import (UNMEASURED_LOSS, AccountRecord, CarryRecord, ModelRecord, WorkCount, account_key,
                                work_count_key)
from node.state.round_close import close_round
from node.state.transition import Transition
from node.types.merkle import inclusion_proof, merkle_root
from node.storage.chainstore import ChainStore
from node.types.transactions import (NO_CARRY, AuditReport, FraudProof, RegisterAuditor, RegisterMiner, Transfer,
                               WorkCommitment, sign_tx)
from node.uPoW.model_state import genesis_model_root
from node.uPoW.oracle import KERNEL_VERSION, WorkUnavailable
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from tests.challenges import drawn_challenge
from tests.state_checks import expected_total, total_holdings

VALIDATORS = [SigningKey(sha256(b"close validator %d" % i)) for i in range(4)]
HONEST, LAZY, CHEAT = (SigningKey(sha256(b"close miner %s" % n)) for n in (b"honest", b"lazy", b"cheat"))
AUDITOR, PROVER = SigningKey(sha256(b"close auditor")), SigningKey(sha256(b"close prover"))
EMISSION = 1_000_000
SEGMENTS = 4
AUDIT_DRAWS = 2
AUDITORS_PER_UNIT = 2
LOSS_BITS = 0x3F800000  # 1.0f


def _genesis(validators=VALIDATORS, committee_size=4, epoch_rounds=1) -> g.Genesis:
    base = g.load_genesis()
    # the last validator holds the smallest bond, so it is the first to give up its seat
    stakes = [g.Account(k.public_key, 0, 1000 - i) for i, k in enumerate(validators)]
    workers = [g.Account(k.public_key, 100, 1000) for k in (HONEST, LAZY, CHEAT, AUDITOR)]
    return dataclasses.replace(
        base, chain_id="close-test",
        validators=tuple(g.Validator(k.public_key, 10) for k in validators),
        accounts=tuple(stakes + workers + [g.Account(PROVER.public_key, 100, 0)]),
        model=dataclasses.replace(base.model, context_length=8, n_layer=1, n_head=1, n_embd=8),
        training=dataclasses.replace(base.training, steps_per_unit=SEGMENTS, checkpoint_every=1,
                                     audit_segments=AUDIT_DRAWS, auditors_per_unit=AUDITORS_PER_UNIT),
        consensus=dataclasses.replace(base.consensus, round_blocks=7, commit_blocks=2,
                                      committee_size=committee_size, epoch_rounds=epoch_rounds),
        economics=dataclasses.replace(base.economics, emission_per_round=EMISSION, reward_units_bps=7000,
                                      reward_audits_bps=2000, reward_proposer_bps=1000,
                                      min_miner_bond=100, min_auditor_bond=100,
                                      fraud_slash_bps=5000, fraud_bounty_bps=5000, fraud_proof_deposit=50,
                                      # the close's bookkeeping is the subject; test_ledger tests fees
                                      min_tx_fee=0))


GENESIS = _genesis()
KEYS = {k.public_key: k for k in VALIDATORS + [HONEST, LAZY, CHEAT, AUDITOR, PROVER]}


class FakeOracle:
    """Confirms every fraud proof; the new model's root is a hash of the old one and the
    deltas in order.  available=False: every answer needs a blob this node lacks."""

    def __init__(self, genesis: g.Genesis):
        self.genesis = genesis
        self.available = True
        self.aggregated: list[tuple[bytes, list[bytes]]] = []

    def genesis_model_root(self) -> bytes:
        return genesis_model_root(self.genesis)

    def confirm_fraud(self, model_root, assignment, commitment, proof) -> bool:
        self._require_blobs()
        return True

    def aggregate(self, model_root, delta_hashes, loss_bits, round_):
        self._require_blobs()
        self.aggregated.append((model_root, list(delta_hashes)))
        return next_root(model_root, delta_hashes), LOSS_BITS

    def _require_blobs(self):
        if not self.available:
            raise WorkUnavailable(bytes(32))


def next_root(model_root: bytes, delta_hashes) -> bytes:
    return sha256(model_root + b"".join(delta_hashes))


def leaves(miner: SigningKey) -> list[bytes]:
    return [sha256(miner.public_key + bytes([i])) for i in range(SEGMENTS + 1)]


def delta(miner: SigningKey) -> bytes:
    return sha256(b"delta" + miner.public_key)


def commitment(miner: SigningKey) -> WorkCommitment:
    return WorkCommitment(round=0, unit=0, shard=0, start_root=genesis_model_root(GENESIS),
                          checkpoint_root=merkle_root(leaves(miner)), checkpoint_count=SEGMENTS + 1,
                          leaves_hash=sha256(b"".join(leaves(miner))), delta_hash=delta(miner),
                          loss_trace=(1,) * SEGMENTS, kernel_version=KERNEL_VERSION,
                          evidence_locks=(bytes(32),) * SEGMENTS)


def audit(miner: SigningKey, segment: int) -> AuditReport:
    return AuditReport(round=0, miner=miner.public_key, unit=0, segment=segment,
                       result_hash=leaves(miner)[segment + 1],
                       result_proof=tuple(inclusion_proof(leaves(miner), segment + 1)), evidence=bytes(32))


def fraud(miner: SigningKey) -> FraudProof:
    return FraudProof(round=0, miner=miner.public_key, unit=0, segment=0, start_hash=leaves(miner)[0],
                      start_proof=tuple(inclusion_proof(leaves(miner), 0)),
                      claimed_end_hash=leaves(miner)[1], end_proof=tuple(inclusion_proof(leaves(miner), 1)),
                      computed_end_hash=sha256(b"what segment 0 really gives"))


def commit_for(block, signers):
    body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
    return certificate_from_precommits([sign_vote(k, GENESIS.chain_id, body) for k in signers])


class Network:
    """A proposer and a validator that executes every block itself, fed the same blocks."""

    def __init__(self, tmp_path, genesis=GENESIS):
        self.genesis = genesis
        self.oracle = FakeOracle(genesis)
        self.stores = [ChainStore.open(tmp_path / name) for name in ("proposer", "validator")]
        self.proposer, self.validator = (Chain(genesis, s, self.oracle) for s in self.stores)
        self.nonces: dict[bytes, int] = {}
        self.signers = list(VALIDATORS)

    def tx(self, key: SigningKey, payload):
        nonce = self.nonces.get(key.public_key, 0)
        self.nonces[key.public_key] = nonce + 1
        return sign_tx(key, self.genesis.chain_id, nonce, payload, self.genesis.economics.min_tx_fee)

    def propose(self, txs=()):
        # two validators in turn, so that each round's challenge gets its two choosers
        # (blocks 4 and 5); round 0's closing block, 7, is VALIDATORS[0]'s
        proposer = VALIDATORS[self.proposer.height % 2]
        block, refused = self.proposer.propose(list(txs), proposer.public_key, 0)
        assert not refused, refused
        return block

    def finalize(self, block) -> None:
        commit = commit_for(block, self.signers)
        for chain in (self.validator, self.proposer):
            chain.finalize(block, commit)

    def step(self, txs=()):
        block = self.propose(txs)
        self.finalize(block)
        return block

    def close(self):
        for store in self.stores:
            store.close()


def assigned(state: ChainState, miner: SigningKey) -> list[tuple[SigningKey, int]]:
    """(auditor, segment) of each re-execution the draws of miner's unit ask."""
    challenge = drawn_challenge(state, 0, miner.public_key, 0, GENESIS.training)
    return [(KEYS[a], s) for a in challenge.auditors for s in challenge.segments_of(a)]


def play_round(net: Network) -> list[tuple[SigningKey, int]]:
    """Heights 1-5 of round 0: HONEST's unit audited in full by both its auditors, LAZY's
    only on its last challenged segment, CHEAT's audited and proven fraudulent.  Returns
    the (auditor, segment) reports on HONEST's unit."""
    net.step([net.tx(k, RegisterMiner(1)) for k in (HONEST, LAZY, CHEAT)] + [net.tx(AUDITOR, RegisterAuditor())])
    net.step([net.tx(k, commitment(k)) for k in (HONEST, LAZY, CHEAT)])
    net.step()  # the challenge block
    net.step()  # its first chooser
    net.step()  # its second: drawn
    state = net.validator.state
    reports = assigned(state, HONEST)
    lazy, cheat = assigned(state, LAZY), assigned(state, CHEAT)
    # the draws are fixed by the chain's (deterministic) hashes; the test needs these
    assert len({a for a, _ in reports}) >= 2 and len({s for _, s in lazy}) >= 2
    net.step([net.tx(a, audit(HONEST, s)) for a, s in reports]
             + [net.tx(lazy[0][0], audit(LAZY, SEGMENTS - 1)),
                net.tx(cheat[0][0], audit(CHEAT, SEGMENTS - 1)), net.tx(PROVER, fraud(CHEAT))])
    assert len(state.round_audits(0)) == len(reports) + 2
    return reports


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path)
    yield network
    network.close()


def _expected_payments(honest_reports) -> tuple[Payment, ...]:
    owed: dict[tuple[bytes, int], int] = {
        (HONEST.public_key, PAID_FOR_UNITS): EMISSION * 7000 // 10_000,
        (VALIDATORS[0].public_key, PAID_AS_PROPOSER): EMISSION * 1000 // 10_000}
    share = EMISSION * 2000 // 10_000 // len(honest_reports)
    for auditor, _ in honest_reports:
        key = (auditor.public_key, PAID_FOR_AUDITS)
        owed[key] = owed.get(key, 0) + share
    return tuple(Payment(to, reason, amount) for (to, reason), amount in sorted(owed.items()))


def test_a_round_closes_with_outcomes_model_payments_and_supply_conserved(net):
    reports = play_round(net)
    before = net.validator.state
    supply_before = before.supply()
    bonds_before = {k: before.account(k).bond for k in KEYS}
    balances_before = {k: before.account(k).balance for k in KEYS}
    block = net.step()
    close, = block.close
    assert block.header.close_hash == close_hash(block.close)
    assert close.round == 0
    assert close.units == tuple(sorted([UnitOutcome(HONEST.public_key, 0, ACCEPTED),
                                        UnitOutcome(LAZY.public_key, 0, REJECTED),
                                        UnitOutcome(CHEAT.public_key, 0, SLASHED)],
                                       key=lambda u: u.miner))
    assert close.payments == _expected_payments(reports)
    root = next_root(genesis_model_root(GENESIS), [delta(HONEST)])
    assert (close.model_root, close.eval_loss_bits) == (root, LOSS_BITS)
    state = net.validator.state
    assert state.model() == ModelRecord(1, root, LOSS_BITS)
    assert net.proposer.state.root() == state.root() == block.header.state_root
    paid = sum(p.amount for p in close.payments)
    assert paid == EMISSION - EMISSION * 2000 // 10_000 % len(reports)
    assert state.supply().emitted == supply_before.emitted + paid
    assert state.supply().burned == supply_before.burned
    assert total_holdings(state) == expected_total(state.supply())
    for key in KEYS:
        gained = sum(p.amount for p in close.payments if p.to == key)
        assert state.account(key).balance == balances_before[key] + gained
        assert state.account(key).bond == bonds_before[key]
    assert state.work_count(0, HONEST.public_key) == 1 and state.work_count(0, LAZY.public_key) == 0


def test_the_fraud_proof_slashed_the_cheat_and_paid_the_prover(net):
    supply = net.validator.state.supply()
    play_round(net)
    state = net.validator.state
    assert state.fraud_record(0, CHEAT.public_key, 0).prover == PROVER.public_key
    assert state.account(CHEAT.public_key).bond == 500
    assert state.account(PROVER.public_key).balance == 100 + 250
    assert state.supply().burned == supply.burned + 250
    assert total_holdings(state) == expected_total(state.supply())


def test_a_round_without_accepted_units_keeps_the_model_and_pays_only_the_proposer(net):
    for _ in range(6):
        net.step()
    close, = net.step().close
    assert (close.units, close.next_committee) == ((), ())
    assert close.payments == (Payment(VALIDATORS[0].public_key, PAID_AS_PROPOSER, EMISSION // 10),)
    assert net.validator.state.model() == ModelRecord(1, genesis_model_root(GENESIS), UNMEASURED_LOSS)
    assert net.oracle.aggregated == []


def _with_close(block, **changes):
    close = (dataclasses.replace(block.close[0], **changes),) if changes else ()
    header = dataclasses.replace(block.header, close_hash=close_hash(close))
    return dataclasses.replace(block, header=header, close=close)


def _first_payment_plus_one(close):
    first = close.payments[0]
    return (dataclasses.replace(first, amount=first.amount + 1),) + close.payments[1:]


@pytest.mark.parametrize("mutate,reason", [
    (lambda b: _with_close(b, model_root=sha256(b"a model nobody computed")), "round close: model root"),
    (lambda b: _with_close(b, eval_loss_bits=0), "round close: eval loss"),
    (lambda b: _with_close(b, payments=_first_payment_plus_one(b.close[0])), "round close: payments entry 0"),
    (lambda b: _with_close(b, payments=b.close[0].payments[1:]), "round close: payments"),
    (lambda b: _with_close(b, units=tuple(dataclasses.replace(u, status=ACCEPTED) for u in b.close[0].units)),
     "round close: unit outcomes"),
    (lambda b: _with_close(b, next_committee=()), "round close: next committee"),
    (lambda b: _with_close(b, round=1), "round close: round"),
    (lambda b: _with_close(b), "round close: missing"),
    (lambda b: dataclasses.replace(b, header=dataclasses.replace(b.header, close_hash=NO_CLOSE)), "close hash"),
])
def test_a_wrong_round_close_is_refused_and_never_finalizes(net, mutate, reason):
    play_round(net)
    bad = mutate(net.propose())
    root = net.validator.state.root()
    with pytest.raises(InvalidBlock, match=reason):
        net.validator.check_block(bad)
    with pytest.raises(InvalidBlock, match=reason):
        net.validator.finalize(bad, commit_for(bad, VALIDATORS))
    assert net.validator.height == 6 and net.validator.state.root() == root
    assert net.validator.store.block(7) is None


def test_a_close_on_a_height_that_closes_no_round_is_refused(net):
    play_round(net)
    honest = net.step()
    net.signers = VALIDATORS[:3] + [HONEST]  # the close rotated the committee
    block = net.propose()
    bad = dataclasses.replace(block, close=honest.close,
                              header=dataclasses.replace(block.header, close_hash=close_hash(honest.close)))
    with pytest.raises(InvalidBlock, match="round close: height 8 closes no round"):
        net.validator.finalize(bad, commit_for(bad, net.signers))
    assert net.validator.height == 7
    net.finalize(block)


def test_a_node_without_the_blobs_can_neither_propose_nor_check_the_close(net):
    play_round(net)
    block = net.propose()
    net.oracle.available = False
    with pytest.raises(WorkUnavailable):
        net.validator.check_block(block)
    with pytest.raises(WorkUnavailable):
        net.validator.propose([], VALIDATORS[1].public_key, 0)
    assert net.validator.height == 6
    net.oracle.available = True  # the blob arrived: the same block now checks
    net.validator.finalize(block, commit_for(block, VALIDATORS))
    assert net.validator.height == 7


def test_an_undecidable_fraud_proof_is_left_out_of_a_proposal_unreported(net):
    net.step([net.tx(CHEAT, RegisterMiner(1))])
    net.step([net.tx(CHEAT, commitment(CHEAT))])
    net.step()
    net.step()
    net.oracle.available = False
    transfer = net.tx(HONEST, Transfer(PROVER.public_key, 1))
    block, refused = net.proposer.propose([net.tx(PROVER, fraud(CHEAT)), transfer],
                                          VALIDATORS[0].public_key, 0)
    assert block.txs == (transfer,) and refused == []


def test_the_rotation_seats_the_worker_and_the_old_committee_s_commit_still_verifies(net):
    play_round(net)
    close, = net.step().close
    # HONEST did the epoch's only verified work: it takes the seat of the smallest bond
    expected = tuple(CommitteeMember(k.public_key, 10) for k in VALIDATORS[:3] + [HONEST])
    assert close.next_committee == expected
    state = net.validator.state
    assert [(m.pub_key, m.power) for m in state.committee().members] == [(s.pub_key, s.power) for s in expected]
    change = state.previous_committee()
    assert change.height == 7 and [m.pub_key for m in change.members] == [k.public_key for k in VALIDATORS]
    # block 8 carries block 7's commit, which the old committee signed
    block = net.propose()
    assert {s.validator for s in block.last_commit.signatures} == {k.public_key for k in VALIDATORS}
    net.validator.check_block(block)
    with pytest.raises(InvalidBlock, match="not in the committee"):
        net.validator.finalize(block, commit_for(block, VALIDATORS))  # block 8 is the new one's
    net.signers = VALIDATORS[:3] + [HONEST]
    net.finalize(block)
    # and block 9 carries block 8's commit, signed by the new committee
    net.step()
    assert net.validator.height == 9


def test_the_old_committee_s_commit_of_a_later_block_is_refused(net):
    play_round(net)
    net.step()
    net.signers = VALIDATORS[:3] + [HONEST]
    net.step()
    block = net.propose()
    stale = commit_for(net.validator.block(8), [VALIDATORS[3]] + VALIDATORS[:2])
    forged = dataclasses.replace(block, last_commit=stale,
                                 header=dataclasses.replace(block.header, last_commit_hash=stale.hash))
    with pytest.raises(InvalidBlock, match="last commit: .*not in the committee"):
        net.validator.check_block(forged)


# -- the rotation rule, on a state built for it

MEMBERS = [SigningKey(sha256(b"member %d" % i)) for i in range(6)]
WORKERS = [SigningKey(sha256(b"worker %d" % i)) for i in range(5)]


def _rotation(work: dict[SigningKey, int], bonds: dict[SigningKey, int] | None = None,
              members=MEMBERS, round_=0, epoch_rounds=1) -> list[bytes]:
    """The next committee's keys decided at round_'s close ([] if it does not change)."""
    genesis = dataclasses.replace(
        _genesis(members, committee_size=len(members), epoch_rounds=epoch_rounds),
        accounts=tuple(g.Account(k.public_key, 0, 1000) for k in members + WORKERS))
    state = ChainState.from_genesis(genesis, genesis_model_root(genesis))
    epoch = round_ // epoch_rounds
    state.apply_writes({work_count_key(epoch, k.public_key): WorkCount(n).encode() for k, n in work.items()})
    state.apply_writes({account_key(k.public_key): AccountRecord(0, 0, bond).encode()
                        for k, bond in (bonds or {}).items()})
    height = (round_ + 1) * genesis.consensus.round_blocks
    transition = Transition(state, genesis, height, sha256(b"parent"), EMPTY_COMMIT, MEMBERS[0].public_key,
                            FakeOracle(genesis))
    close, = close_round(transition)
    return [s.pub_key for s in close.next_committee]


def test_a_rotation_changes_at_most_a_third_of_the_seats():
    # five workers outrank every member; only 6 // 3 = 2 of them get in, the best two,
    # in the seats of the two worst members (equal work and bond: the largest keys)
    work = {w: 10 + i for i, w in enumerate(WORKERS)}
    seats = _rotation(work)
    leaving = sorted((k.public_key for k in MEMBERS), reverse=True)[:2]
    entering = [WORKERS[4].public_key, WORKERS[3].public_key]
    expected = [k.public_key for k in MEMBERS]
    for out, new in zip(leaving, entering):
        expected[expected.index(out)] = new
    assert seats == expected


def test_a_rotation_swaps_one_seat_in_a_committee_of_two():
    seats = _rotation({WORKERS[0]: 2, WORKERS[1]: 1}, members=MEMBERS[:2], bonds={MEMBERS[1]: 5000})
    assert seats == [WORKERS[0].public_key, MEMBERS[1].public_key]


def test_work_then_bond_rank_the_candidates():
    bonds = {MEMBERS[0]: 900, WORKERS[0]: 5000, WORKERS[1]: 2000}
    seats = _rotation({WORKERS[0]: 1, WORKERS[1]: 2}, bonds=bonds)
    expected = [k.public_key for k in MEMBERS]
    # WORKERS[1] has more work; MEMBERS[0] has the smallest bond among the idle members
    expected[0] = WORKERS[1].public_key
    expected[expected.index(max(k.public_key for k in MEMBERS[1:]))] = WORKERS[0].public_key
    assert seats == expected


def test_an_underbonded_worker_cannot_enter():
    assert _rotation({WORKERS[0]: 3}, bonds={WORKERS[0]: 99}) == []


def test_no_rotation_before_the_epoch_ends():
    assert _rotation({WORKERS[0]: 3}, round_=0, epoch_rounds=2) == []
    assert _rotation({WORKERS[0]: 3}, round_=1, epoch_rounds=2) != []


def test_an_accepted_unit_s_end_is_what_its_miner_s_next_unit_may_carry(net):
    """The close records the accepted unit's last leaf (proved by the reports on its last
    segment) and AdamW step; in the next round the miner's unit may carry exactly that,
    or start fresh, and nothing else: a made-up checkpoint, another miner's, or a step
    count that is not its own."""
    play_round(net)
    net.step()  # round 0's close, which seats HONEST in place of a validator
    net.signers = VALIDATORS[:3] + [HONEST]
    state = net.validator.state
    steps = GENESIS.training.steps_per_unit
    assert state.carry(HONEST.public_key, 0) == CarryRecord(leaves(HONEST)[SEGMENTS], steps, 0)
    assert state.carry(LAZY.public_key, 0) is None and state.carry(CHEAT.public_key, 0) is None
    assert state.carry(HONEST.public_key, 1) is None  # another index carries its own

    def next_unit(miner, carried_leaf, start_step):
        return dataclasses.replace(commitment(miner), round=1, start_root=state.model().root,
                                   carried_leaf=carried_leaf, start_step=start_step)

    forged = [sign_tx(miner, GENESIS.chain_id, state.account(miner.public_key).nonce,
                      next_unit(miner, carried_leaf, start_step), GENESIS.economics.min_tx_fee)
              for miner, carried_leaf, start_step in ((HONEST, sha256(b"made up"), steps),
                                                      (HONEST, leaves(HONEST)[SEGMENTS], 2 * steps),
                                                      (LAZY, leaves(HONEST)[SEGMENTS], steps))]
    _, refused = net.proposer.propose(forged, VALIDATORS[0].public_key, 0)
    assert [exc.reason for _, exc in refused] == ["wrong_carry"] * 3
    net.step([net.tx(HONEST, next_unit(HONEST, leaves(HONEST)[SEGMENTS], steps)),
              net.tx(LAZY, next_unit(LAZY, NO_CARRY, 0))])
    assert len(net.validator.state.round_commitments(1)) == 2
