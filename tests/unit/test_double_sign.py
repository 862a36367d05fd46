"""Double-sign evidence through the real chain: two validators' LevelDB stores, real
signatures, every block executed by both.  Evidence counts within the evidence window,
against the committee that decided the double vote's height; the offender is slashed,
unseated from the next block on, barred from re-entry for a window, and its bond stays
until the window after its last seat has closed.

Rounds are 7 blocks and an epoch is one round: commitments at a round's blocks 1-2, the
challenge at 3, its choosers at 4 and 5, audits at 6, the close (and rotation) at 7."""
import dataclasses

import pytest

from node.state.chain import Chain, InvalidBlock
from node.state.chain_state import ChainState
from node.state.consensus_chain import ConsensusChain
from node.state.mempool import Mempool
from node.state.records import EquivocationRecord, WorkCount, equivocation_key, work_count_key
from node.state.round_close import close_round
from node.state.transition import Transition
from node.storage.chainstore import ChainStore
from node.types import genesis as g
from node.state.records import Committee
from node.types.blocks import EMPTY_COMMIT, Block, CommitteeMember, certificate_from_precommits
from node.types.crypto import SigningKey, sha256
from node.types.merkle import inclusion_proof, merkle_root
from node.types.transactions import (AuditReport, DoubleSignEvidence, RegisterMiner, Unbond, WorkCommitment,
                                     sign_tx)
from node.types.votes import PRECOMMIT, PREVOTE, VoteBody, sign_vote
from node.uPoW.model_state import genesis_model_root
from node.uPoW.oracle import KERNEL_VERSION
from node.verify.chain_follow import committee_after
from tests.challenges import drawn_challenge
from tests.state_checks import expected_total, total_holdings

VALIDATORS = [SigningKey(sha256(b"double-sign validator %d" % i)) for i in range(4)]
V0, V1, V2, V3 = VALIDATORS  # V3 holds the smallest bond: the first to give up its seat
WORKER, REPORTER = SigningKey(sha256(b"double-sign worker")), SigningKey(sha256(b"double-sign reporter"))
KEYS = {k.public_key: k for k in VALIDATORS + [WORKER, REPORTER]}
WINDOW = 5
SEGMENTS = 4
BASE = g.load_genesis()
GENESIS = dataclasses.replace(
    BASE, chain_id="double-sign-test",
    validators=tuple(g.Validator(k.public_key, 10) for k in VALIDATORS),
    accounts=tuple([g.Account(k.public_key, 1000, 1000 - i) for i, k in enumerate(VALIDATORS)]
                   + [g.Account(WORKER.public_key, 1000, 1000), g.Account(REPORTER.public_key, 1000, 0)]),
    model=dataclasses.replace(BASE.model, context_length=8, n_layer=1, n_head=1, n_embd=8),
    training=dataclasses.replace(BASE.training, steps_per_unit=SEGMENTS, checkpoint_every=1,
                                 audit_segments=1, auditors_per_unit=1),
    consensus=dataclasses.replace(BASE.consensus, round_blocks=7, commit_blocks=2, committee_size=4,
                                  epoch_rounds=1, evidence_window_blocks=WINDOW),
    economics=dataclasses.replace(BASE.economics, min_miner_bond=100, min_auditor_bond=100,
                                  double_sign_slash_bps=5000, fraud_bounty_bps=4000, min_tx_fee=0))
SLASH_BPS, BOUNTY_BPS = GENESIS.economics.double_sign_slash_bps, GENESIS.economics.fraud_bounty_bps


class FakeOracle:
    """The close's new model is a hash of the old one and the deltas: training is not the subject."""

    def genesis_model_root(self) -> bytes:
        return genesis_model_root(GENESIS)

    def aggregate(self, model_root, delta_hashes, loss_bits, round_):
        return sha256(model_root + b"".join(delta_hashes)), 0x3F800000


class Network:
    """A proposer's chain and a validator's chain fed the same blocks, each committed by
    the whole committee that decides it."""

    def __init__(self, tmp_path):
        self.stores = [ChainStore.open(tmp_path / name) for name in ("proposer", "validator")]
        self.proposer, self.validator = (Chain(GENESIS, s, FakeOracle()) for s in self.stores)

    @property
    def state(self) -> ChainState:
        return self.validator.state

    def tx(self, key: SigningKey, payload, later: int = 0):
        """key's transaction at its next nonce (plus later, for a second one in a block)."""
        nonce = self.state.account(key.public_key).nonce + later
        return sign_tx(key, GENESIS.chain_id, nonce, payload, GENESIS.economics.min_tx_fee)

    def propose(self, txs=(), proposer: SigningKey | None = None):
        """The next block, by a member taken in turn; (block, refused transactions)."""
        members = self.state.committee().members
        proposer = proposer or KEYS[members[(self.proposer.height + 1) % len(members)].pub_key]
        return self.proposer.propose(list(txs), proposer.public_key, self.proposer.height + 1)

    def finalize(self, block) -> None:
        signers = [KEYS[m.pub_key] for m in self.state.committee().members]
        for chain in (self.validator, self.proposer):
            chain.finalize(block, commit_for(block, signers))

    def step(self, txs=()):
        block, refused = self.propose(txs)
        assert not refused, refused
        self.finalize(block)
        return block

    def step_to(self, height: int) -> None:
        """Empty blocks until the head is at height."""
        while self.validator.height < height:
            self.step()

    def refusal(self, tx) -> str:
        """The reason the next block would leave tx out."""
        _, refused = self.propose([tx])
        assert len(refused) == 1, "the transaction would be included"
        return refused[0][1].reason

    def close(self) -> None:
        while self.stores:
            self.stores.pop().close()


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path)
    yield network
    network.close()


def commit_for(block, signers):
    body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
    return certificate_from_precommits([sign_vote(k, GENESIS.chain_id, body) for k in signers])


def double_vote(key: SigningKey, height: int, kind: int = PRECOMMIT) -> DoubleSignEvidence:
    first, second = (sign_vote(key, GENESIS.chain_id, VoteBody(kind, height, 0, block_hash))
                     for block_hash in (sha256(b"one block"), sha256(b"another block")))
    return DoubleSignEvidence(first, second)


def leaves() -> list[bytes]:
    return [sha256(b"worker leaf %d" % i) for i in range(SEGMENTS + 1)]


def play_worker_round(net: Network) -> None:
    """Round 0 up to its close: WORKER's unit committed and every draw of it audited, so
    that the close at height 7 accepts it and seats WORKER in V3's place."""
    unit = leaves()
    net.step([net.tx(WORKER, RegisterMiner(1))])
    net.step([net.tx(WORKER, WorkCommitment(
        round=0, unit=0, shard=0, start_root=genesis_model_root(GENESIS), checkpoint_root=merkle_root(unit),
        checkpoint_count=SEGMENTS + 1, leaves_hash=sha256(b"".join(unit)), delta_hash=sha256(b"worker delta"),
        loss_trace=(1,) * SEGMENTS, kernel_version=KERNEL_VERSION, evidence_locks=(bytes(32),) * SEGMENTS))])
    net.step_to(5)  # the challenge, then two choosers: drawn
    challenge = drawn_challenge(net.state, 0, WORKER.public_key, 0, GENESIS.training)
    net.step([net.tx(KEYS[a], AuditReport(round=0, miner=WORKER.public_key, unit=0, segment=s,
                                          result_hash=unit[s + 1], result_proof=tuple(inclusion_proof(unit, s + 1)),
                                          evidence=bytes(32)), later=i)
              for a in challenge.auditors for i, s in enumerate(challenge.segments_of(a))])


def seated(net: Network) -> list[bytes]:
    return [m.pub_key for m in net.state.committee().members]


def bond(net: Network, key: SigningKey) -> int:
    return net.state.account(key.public_key).bond


def test_double_votes_just_before_a_rotation_are_punished_after_it(net):
    play_worker_round(net)
    bonds = {k: bond(net, k) for k in (V1, V3)}
    # V3 and V1 sign two blocks at height 7, the last block the old committee decides
    net.step()
    assert seated(net) == [V0.public_key, V1.public_key, V2.public_key, WORKER.public_key]
    net.step([net.tx(REPORTER, double_vote(V3, 7)), net.tx(REPORTER, double_vote(V1, 7), later=1)])
    bounty = 0
    for key, before in bonds.items():
        taken = before * SLASH_BPS // 10_000
        assert bond(net, key) == before - taken
        bounty += taken * BOUNTY_BPS // 10_000
    assert net.state.account(REPORTER.public_key).balance == 1000 + bounty
    assert total_holdings(net.state) == expected_total(net.state.supply())
    # V3 had left at the rotation; V1, still seated, leaves now
    assert seated(net) == [V0.public_key, V2.public_key, WORKER.public_key]
    assert net.state.equivocation(V1.public_key) == EquivocationRecord(8)


def test_a_light_auditor_follows_the_committee_through_removals_and_rotations(net):
    """The light auditor executes no transaction: from the blocks alone it must seat the
    committee the ledger seats, or it would check commits and draw challenges wrongly."""
    play_worker_round(net)
    net.step()
    net.step([net.tx(REPORTER, double_vote(V3, 7)), net.tx(REPORTER, double_vote(V1, 7), later=1)])
    net.step([net.tx(REPORTER, double_vote(V0, 8))])
    committee = Committee(tuple(CommitteeMember(v.pub_key, v.power) for v in GENESIS.validators))
    seen = []
    for height in range(1, net.validator.height + 1):
        committee = committee_after(committee, Block.decode(net.validator.encoded_block(height)))
        seen.append(committee)
    assert seen[-1] == net.state.committee()
    assert [m.pub_key for m in seen[-1].members] == [V2.public_key, WORKER.public_key]
    assert len(set(seen)) == 4  # genesis, the rotation, and each removal


def test_the_next_block_is_decided_without_the_removed_validator(net, tmp_path):
    net.step([net.tx(REPORTER, double_vote(V1, 1))])
    mempool = Mempool(10, GENESIS.consensus.max_tx_bytes, GENESIS.economics)
    view = ConsensusChain(net.validator, mempool, V0.public_key, lambda: 0, lambda digest: None)
    assert view.validators() == [(k.public_key, 10) for k in (V0, V2, V3)]
    with pytest.raises(InvalidBlock, match="not in the committee"):
        net.validator.check_block(net.propose(proposer=V1)[0])
    # block 2 carries block 1's commit, which V1 signed with the committee of its time
    block, _ = net.propose()
    assert V1.public_key in {s.validator for s in block.last_commit.signatures}
    with pytest.raises(InvalidBlock, match="not in the committee"):
        net.validator.finalize(block, commit_for(block, [V0, V1, V2, V3]))
    net.finalize(block)
    assert net.validator.height == 2
    # the history survives a restart: the store's state hashes to the head's root
    changes = net.state.committee_changes()
    net.close()
    with ChainStore.open(tmp_path / "validator") as store:
        assert Chain(GENESIS, store, FakeOracle()).state.committee_changes() == changes


def test_a_validator_seated_within_the_window_cannot_unbond(net):
    play_worker_round(net)
    net.step()  # V3 leaves the committee: it decided block 7, its last
    assert net.refusal(net.tx(V3, Unbond(10))) == "evidence_window"
    _, refused = net.propose([net.tx(V3, Unbond(10))])
    assert "from height 13" in str(refused[0][1])
    net.step([net.tx(REPORTER, double_vote(V3, 7))])  # evidence that comes late still finds its bond
    net.step_to(11)
    assert net.refusal(net.tx(V3, Unbond(10))) == "evidence_window"  # at 12
    net.step()
    before = bond(net, V3)
    net.step([net.tx(V3, Unbond(10))])  # at 13
    assert bond(net, V3) == before - 10
    # a member still seated waits for its seat first
    assert net.refusal(net.tx(V0, Unbond(10))) == "committee_member"


def test_a_removed_validator_waits_the_window_after_its_removal(net):
    net.step([net.tx(REPORTER, double_vote(V1, 1))])  # V1 decided block 1, its last
    net.step_to(WINDOW)
    assert net.refusal(net.tx(V1, Unbond(10))) == "evidence_window"  # at 1 + WINDOW
    net.step()
    before = bond(net, V1)
    net.step([net.tx(V1, Unbond(10))])
    assert bond(net, V1) == before - 10


def test_evidence_older_than_the_window_is_refused(net):
    net.step_to(WINDOW + 1)
    assert net.refusal(net.tx(REPORTER, double_vote(V0, 1))) == "evidence_expired"
    net.step([net.tx(REPORTER, double_vote(V2, 2))])  # exactly a window old: still counts
    assert V2.public_key not in seated(net)


def test_evidence_of_a_height_not_decided_yet_is_refused(net):
    net.step()
    assert net.refusal(net.tx(REPORTER, double_vote(V0, 3))) == "evidence_too_new"
    # the double votes of the height this block decides count: a later consensus round's
    # proposer may carry them
    net.step([net.tx(REPORTER, double_vote(V0, 2))])
    assert V0.public_key not in seated(net)


def test_evidence_against_a_validator_not_seated_at_its_height_is_refused(net):
    play_worker_round(net)
    net.step()  # WORKER is seated from block 8 on
    assert WORKER.public_key in seated(net)
    assert net.refusal(net.tx(REPORTER, double_vote(WORKER, 7))) == "not_in_committee"
    net.step()
    net.step([net.tx(REPORTER, double_vote(WORKER, 8))])
    assert WORKER.public_key not in seated(net)


def test_a_validator_is_punished_once_for_its_double_votes_up_to_the_punishment(net):
    net.step()
    evidence = double_vote(V1, 1)
    block, refused = net.propose([net.tx(REPORTER, evidence), net.tx(REPORTER, evidence, later=1)])
    assert [error.reason for _, error in refused] == ["duplicate_evidence"]
    net.finalize(block)
    after = bond(net, V1)
    assert net.refusal(net.tx(REPORTER, evidence)) == "duplicate_evidence"
    # another step it signed twice before the punishment is paid for too
    assert net.refusal(net.tx(REPORTER, double_vote(V1, 2, kind=PREVOTE))) == "duplicate_evidence"
    assert bond(net, V1) == after


def test_the_committee_history_keeps_only_the_window(net):
    net.step([net.tx(REPORTER, double_vote(V1, 1))])
    net.step_to(3)
    net.step([net.tx(REPORTER, double_vote(V2, 4))])
    assert [c.height for c in net.state.committee_changes()] == [1, 4]
    net.step_to(7)
    net.step([net.tx(REPORTER, double_vote(V3, 7))])
    # evidence in block 8 names heights from 8 - WINDOW = 3 on: the change at 1, which
    # says who decided the heights up to 1, is dropped
    assert [c.height for c in net.state.committee_changes()] == [4, 8]
    assert [m.pub_key for m in net.state.committee_at(3).members] == [V0.public_key, V2.public_key, V3.public_key]
    assert seated(net) == [V0.public_key]


def test_the_last_member_is_slashed_but_keeps_its_seat(net):
    net.step([net.tx(REPORTER, double_vote(V1, 1)), net.tx(REPORTER, double_vote(V2, 1), later=1),
              net.tx(REPORTER, double_vote(V3, 1), later=2)])
    before = bond(net, V0)
    net.step([net.tx(REPORTER, double_vote(V0, 1))])
    assert bond(net, V0) == before - before * SLASH_BPS // 10_000
    assert seated(net) == [V0.public_key]
    net.step()  # and the chain goes on


# -- the rotation does not re-seat an offender within the window, on a state built for it

def _rotation(punished_at: int | None, close_height: int = 7) -> list[bytes]:
    """The committee after the close at close_height, where WORKER did the epoch's only
    verified work and, if punished_at, was punished for equivocation at that height."""
    genesis = dataclasses.replace(GENESIS, consensus=dataclasses.replace(GENESIS.consensus,
                                                                         epoch_rounds=close_height // 7))
    state = ChainState.from_genesis(genesis, genesis_model_root(genesis))
    writes = {work_count_key(0, WORKER.public_key): WorkCount(1).encode()}
    if punished_at is not None:
        writes[equivocation_key(WORKER.public_key)] = EquivocationRecord(punished_at).encode()
    state.apply_writes(writes)
    t = Transition(state, genesis, close_height, sha256(b"parent"), EMPTY_COMMIT, V0.public_key, FakeOracle())
    close, = close_round(t)
    return [m.pub_key for m in close.next_committee]


def test_a_punished_validator_cannot_reenter_within_the_window():
    expected = [V0.public_key, V1.public_key, V2.public_key, WORKER.public_key]
    assert _rotation(None) == expected
    assert _rotation(punished_at=7 - WINDOW) == []
    assert _rotation(punished_at=14 - WINDOW - 1, close_height=14) == expected
