"""Random sequences of valid and invalid transactions (and rewards, slashes, work
commitments, audits, fraud proofs, double-sign evidence and round closes), each paying
a fee (some below the minimum), never break supply conservation or nonce monotonicity,
never empty the committee, and never seat a validator punished within the evidence window.

Operations are grouped into blocks; a round is five blocks (commitments in its
first two, the challenge in its third, audits and fraud proofs in its fourth, the
close in its fifth), and every account is a registered miner from the first block on.
A "work" operation does what the block's phase takes: commit the sender's unit, or
audit (as the assigned auditor), claim its data or delta withheld, or prove fraud
against another miner's unit."""
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from node.types import genesis as g
from node.types.blocks import EMPTY_COMMIT, certificate_from_precommits
from node.types.crypto import SigningKey, sha256
from node.state.chain_state import ChainState
from node.state.round_close import close_round
from node.state.transition import Transition, TxError
from node.state.tx_rules import apply_tx
from node.types.merkle import inclusion_proof, merkle_root
from node.types.transactions import (AuditReport, Bond, DeltaWithheld, DoubleSignEvidence, EvidenceDispute, FraudProof,
                                     RegisterAuditor, RegisterMiner, Transfer, Unbond, WithheldClaim, WorkCommitment,
                                     sign_tx)
from node.uPoW.evidence import evidence_lock
from node.uPoW.model_state import genesis_model_root
from node.uPoW.oracle import KERNEL_VERSION
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from node.uPoW.rounds import AUDIT, TRAIN, RoundSchedule
from tests.challenges import drawn_challenge
from tests.state_checks import expected_total, total_holdings

KEYS = [SigningKey(sha256(b"property %d" % i)) for i in range(4)]
BY_KEY = {k.public_key: k for k in KEYS}
BASE = g.load_genesis()
GENESIS = dataclasses.replace(
    BASE, chain_id="prop", validators=(g.Validator(KEYS[3].public_key, 1),),
    accounts=tuple(g.Account(k.public_key, 1000 * (i + 1), 200 + 100 * i) for i, k in enumerate(KEYS)),
    model=dataclasses.replace(BASE.model, context_length=8, n_layer=1, n_head=1, n_embd=8),
    training=dataclasses.replace(BASE.training, steps_per_unit=2, checkpoint_every=1,
                                 audit_segments=1, auditors_per_unit=1),
    consensus=dataclasses.replace(BASE.consensus, round_blocks=5, commit_blocks=2, committee_size=1,
                                  epoch_rounds=1, evidence_window_blocks=4),
    economics=dataclasses.replace(BASE.economics, min_miner_bond=150, min_auditor_bond=150))
SCHEDULE = RoundSchedule.from_genesis(GENESIS)
SEGMENTS = 2

OPERATION = st.tuples(
    st.sampled_from(["transfer", "bond", "unbond", "register", "register_auditor", "emit", "slash",
                     "equivocate", "work", "work", "work", "work"]),
    st.integers(0, 3), st.integers(0, 3),           # sender, other party
    st.integers(0, 5000),                            # amount
    st.sampled_from([0, 0, 0, -1, 1]),               # nonce offset: mostly valid
    st.sampled_from([False, False, False, True]),   # forge the signature
    st.booleans())                                   # the last operation of its block


class FakeOracle:
    def confirm_fraud(self, model_root, assignment, commitment, proof) -> bool:
        return True

    def aggregate(self, model_root, delta_hashes, loss_bits, round_):
        return sha256(model_root + b"".join(delta_hashes)), 0x3F800000


def _leaves(miner: bytes, round_: int) -> list[bytes]:
    return [sha256(miner + round_.to_bytes(8, "big") + bytes([i])) for i in range(SEGMENTS + 1)]


def _commitment(miner: bytes, round_: int, model_root: bytes) -> WorkCommitment:
    leaves = _leaves(miner, round_)
    return WorkCommitment(round_, 0, 0, model_root, merkle_root(leaves), SEGMENTS + 1,
                          sha256(b"".join(leaves)), sha256(b"delta" + miner), (0,) * SEGMENTS,
                          KERNEL_VERSION, tuple(evidence_lock(_digest(miner, round_, i)) for i in range(SEGMENTS)))


def _digest(miner: bytes, round_: int, segment: int) -> bytes:
    """The gradient digest the miner locks for segment; the reports below never carry it."""
    return sha256(b"gradient" + miner + round_.to_bytes(8, "big") + bytes([segment]))


def _audit(t: Transition, miner: bytes, round_: int, pick: int) -> tuple[SigningKey | None, AuditReport]:
    """An audit of one challenged segment of miner's unit, and its assigned auditor."""
    challenge = drawn_challenge(t, round_, miner, 0, GENESIS.training)
    segments, auditors = challenge.segments, challenge.auditors
    segment = segments[pick % len(segments)]
    leaves = _leaves(miner, round_)
    report = AuditReport(round_, miner, 0, segment, leaves[segment + 1],
                         tuple(inclusion_proof(leaves, segment + 1)), bytes(32))
    return (BY_KEY.get(auditors[0]) if auditors else None), report


def _fraud(miner: bytes, round_: int) -> FraudProof:
    leaves = _leaves(miner, round_)
    return FraudProof(round_, miner, 0, 0, leaves[0], tuple(inclusion_proof(leaves, 0)), leaves[1],
                      tuple(inclusion_proof(leaves, 1)), sha256(b"what segment 0 really gives"))


def _signed(t: Transition, state: ChainState, kind, sender, other, amount, nonce_offset, forge):
    """The operation's transaction and its signer; audits and fraud proofs mostly target
    a unit committed in the round."""
    key, miner, round_ = KEYS[sender], KEYS[other].public_key, SCHEDULE.round_of(t.height)
    committed = state.round_commitments(round_)
    if committed and amount % 5:
        miner = committed[other % len(committed)][0]
    if kind == "transfer":
        payload = Transfer(miner, amount)
    elif kind == "bond":
        payload = Bond(amount)
    elif kind == "unbond":
        payload = Unbond(amount)
    elif kind == "register":
        payload = RegisterMiner(1 + amount % 3)
    elif kind == "register_auditor":
        payload = RegisterAuditor()
    elif kind == "equivocate":  # half of them by the member seated now
        signer = BY_KEY[t.committee().members[0].pub_key] if amount % 2 else KEYS[other]
        payload = _double_vote(signer, max(t.height - amount % 8, 1))
    elif SCHEDULE.phase(t.height) == TRAIN:
        payload = _commitment(key.public_key, round_, t.model().root)
    elif SCHEDULE.phase(t.height) == AUDIT and amount % 3 == 0:
        payload = _fraud(miner, round_)
    elif SCHEDULE.phase(t.height) == AUDIT and amount % 7 == 1:
        auditor, report = _audit(t, miner, round_, amount)
        key, payload = auditor or key, WithheldClaim(round_, miner, 0, report.segment)
    elif SCHEDULE.phase(t.height) == AUDIT and amount % 7 == 2:
        key, payload = KEYS[3], DeltaWithheld(round_, miner, 0)  # the committee's one member
    elif SCHEDULE.phase(t.height) == AUDIT and amount % 7 == 3:
        auditor, report = _audit(t, miner, round_, amount)
        reporter = auditor.public_key if auditor else miner
        payload = EvidenceDispute(round_, miner, 0, report.segment, reporter, _digest(miner, round_, report.segment))
    elif SCHEDULE.phase(t.height) == AUDIT:
        auditor, payload = _audit(t, miner, round_, amount)
        key = auditor or key
    else:
        payload = _commitment(key.public_key, round_, t.model().root)  # outside its window
    # fees around the minimum of 100: some below it (refused), most above
    fee = GENESIS.economics.min_tx_fee - 20 + amount % 150
    tx = sign_tx(key, GENESIS.chain_id, max(t.account(key.public_key).nonce + nonce_offset, 0), payload, fee)
    return key, dataclasses.replace(tx, signature=bytes(64)) if forge else tx


def _double_vote(key: SigningKey, height: int) -> DoubleSignEvidence:
    """key's precommits for two blocks at height (seated then or not, recent or not)."""
    first, second = (sign_vote(key, GENESIS.chain_id, VoteBody(PRECOMMIT, height, 0, sha256(b))) for b in (b"1", b"2"))
    return DoubleSignEvidence(first, second)


def _genesis_with_miners() -> ChainState:
    state = ChainState.from_genesis(GENESIS, genesis_model_root(GENESIS))
    t = Transition(state, GENESIS, 1, bytes.fromhex(GENESIS.hash), EMPTY_COMMIT, KEYS[0].public_key, FakeOracle())
    for key in KEYS:
        apply_tx(t, sign_tx(key, GENESIS.chain_id, 0, RegisterMiner(1), GENESIS.economics.min_tx_fee))
    state.apply_writes(t.writes)
    return state


def _blocks(operations):
    block = []
    for operation in operations:
        block.append(operation[:-1])
        if operation[-1]:
            yield block
            block = []
    yield block


@settings(max_examples=150, deadline=None)
@given(st.lists(OPERATION, max_size=60))
def test_supply_is_conserved_and_nonces_only_grow(operations):
    state = _genesis_with_miners()
    for height, block in enumerate(_blocks(operations), 2):
        # the committee's one member proposes, carrying its own precommit of the block
        # before: the chooser that draws each round's challenge
        proposer = BY_KEY[state.committee().members[0].pub_key]
        parent = sha256(b"block %d" % (height - 1))
        last_commit = certificate_from_precommits(
            [sign_vote(proposer, GENESIS.chain_id, VoteBody(PRECOMMIT, height - 1, 0, parent))])
        t = Transition(state, GENESIS, height, parent, last_commit, proposer.public_key, FakeOracle())
        for kind, sender, other, amount, nonce_offset, forge in block:
            if kind == "emit":
                t.emit(KEYS[sender].public_key, amount)
                continue
            if kind == "slash":
                t.slash(KEYS[sender].public_key, amount % 10_001, KEYS[other].public_key, (amount * 7) % 10_001)
                continue
            key, tx = _signed(t, state, kind, sender, other, amount, nonce_offset, forge)
            nonces = {k.public_key: t.account(k.public_key).nonce for k in KEYS}
            before = dict(t.writes)
            try:
                apply_tx(t, tx)
                nonces[key.public_key] += 1
            except TxError:
                assert t.writes == before
            assert nonces == {k.public_key: t.account(k.public_key).nonce for k in KEYS}
        seated_before = {m.pub_key for m in state.committee().members}
        close_round(t)
        state.apply_writes(t.writes)
        assert total_holdings(state) == expected_total(state.supply())
        assert state.model().round == height // SCHEDULE.round_blocks
        assert len(state.committee().members) == 1  # the last member is never removed
        for entrant in {m.pub_key for m in state.committee().members} - seated_before:
            punished = state.equivocation(entrant)
            assert punished is None or height - punished.height > GENESIS.consensus.evidence_window_blocks
        for k in KEYS:
            account = state.account(k.public_key)
            assert account.balance >= 0 and account.bond >= 0
