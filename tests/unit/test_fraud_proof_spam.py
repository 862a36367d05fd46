"""Bogus fraud-proof spam, through the real ledger, chain, LevelDB store, mempool,
proposer (ConsensusChain) and compute worker: a flood of proofs that prove nothing
is decided off the event loop, costs each spammer its deposit (or is refused at the
mempool), never puts more than the per-block budget of proofs in a block, and does
not keep a true proof, sent last, from landing at once; the chain keeps finalizing
through the round's close."""
import asyncio
import dataclasses

import pytest

from node.state.chain import Chain, InvalidBlock
from node.state.consensus_chain import ConsensusChain
from node.state.mempool import Mempool, MempoolError
from node.state.records import FraudRecord
from node.state.tx_rules import FRAUD_PROOFS_PER_BLOCK, fraud_proof_count
from node.storage.chainstore import ChainStore
from node.types.blocks import CommitCertificate, certificate_from_precommits, tx_root
from node.types.crypto import SigningKey, sha256
from node.types.merkle import inclusion_proof
from node.types.transactions import FraudProof, RegisterAuditor, RegisterMiner, sign_tx
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from node.uPoW.assignment import assign_unit
from node.uPoW.model_state import genesis_model, genesis_model_root
from node.uPoW.trainer import Trainer
from node.uPoW.unit_compute import ComputeWorker
from node.uPoW.work import UnitWork, commitment_for, train_unit
from node.uPoW.work_oracle import BlobWorkOracle
from node.work.fraud_intake import MAX_DECIDING, FraudIntake
from tests.round_harness import BASE, Round, fake_checkpoints, round_genesis
from tests.state_checks import expected_total, total_holdings

VALIDATOR = SigningKey(sha256(b"spam validator"))
AUDITOR = SigningKey(sha256(b"spam auditor"))
HONEST = SigningKey(sha256(b"spam honest miner"))
CHEAT = SigningKey(sha256(b"spam cheating miner"))
SPAMMERS = [SigningKey(sha256(b"spammer %d" % i)) for i in range(10)]
PROOFS_EACH = 3
BOND = 10_000_000
CLOSE = 10  # audit window 4..9
FEE = BASE.economics.min_tx_fee  # round_genesis keeps the devnet's fees

pytestmark = pytest.mark.asyncio


class Node:
    """The validator's side: its chain (from the round harness), a mempool, the
    intake deciding fraud proofs in a real compute worker, and the proposer."""

    def __init__(self, r: Round, worker: ComputeWorker):
        self.r = r
        g = r.genesis
        self.mempool = Mempool(1000, g.consensus.max_tx_bytes, g.economics)
        self.oracle: BlobWorkOracle = r.chain.oracle
        self.intake = FraudIntake(r.chain, self.mempool, self.oracle, worker, self.fetch)
        self.oracle.replay_elsewhere = self.intake.replay_soon
        self.view = ConsensusChain(r.chain, self.mempool, VALIDATOR.public_key,
                                   lambda: r.chain.height + 1, self.fetch_now)
        self.blocks = []

    async def fetch(self, digest: bytes) -> bool:
        return self.r.fetch_into(self.r.validator.blobs, digest)

    def fetch_now(self, digest: bytes) -> None:
        self.r.fetch_into(self.r.validator.blobs, digest)

    async def finalize_next(self):
        """Propose the next block from the mempool and finalize it; a proposal that has
        to wait (a blob, a replay) is retried once the wait is over."""
        for _ in range(10):
            block = self.view.build_block(self.r.chain.height + 1, 0)
            if block is not None:
                break
            await asyncio.sleep(0.05)
        body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
        self.r.chain.finalize(block, certificate_from_precommits(
            [sign_vote(VALIDATOR, self.r.genesis.chain_id, body)]))
        self.mempool.remove_committed(self.r.chain.state)
        self.blocks.append(block)
        return block


def _proof(miner: SigningKey, leaves: list[bytes], segment: int, computed: bytes) -> FraudProof:
    return FraudProof(round=0, miner=miner.public_key, unit=0, segment=segment, start_hash=leaves[segment],
                      start_proof=tuple(inclusion_proof(leaves, segment)),
                      claimed_end_hash=leaves[segment + 1],
                      end_proof=tuple(inclusion_proof(leaves, segment + 1)), computed_end_hash=computed)


@pytest.fixture
def r(tmp_path):
    genesis = round_genesis(tmp_path, VALIDATOR, [AUDITOR, HONEST, CHEAT, *SPAMMERS], BOND,
                            round_blocks=CLOSE)
    keys = {"validator": VALIDATOR, "auditor": AUDITOR, "honest": HONEST, "cheat": CHEAT}
    r = Round(tmp_path, genesis, keys)
    yield r
    r.store.close()


@pytest.fixture
def worker(r, tmp_path):
    w = ComputeWorker(tmp_path / "genesis.json", tmp_path / "validator")
    yield w
    w.close()


def _commit(r: Round) -> dict[str, UnitWork]:
    """Blocks 1-4: registrations, an honest and a faked unit (every checkpoint served),
    the challenge and the block that records it."""
    g, chain_id = r.genesis, r.genesis.chain_id
    r.finalize([r.parties[n].tx(chain_id, RegisterMiner(units=1)) for n in ("honest", "cheat")]
               + [r.parties["auditor"].tx(chain_id, RegisterAuditor())])
    trainer, model = Trainer(g), genesis_model(g)
    works = {}
    for name in ("honest", "cheat"):
        assignment = assign_unit(r.chain.genesis_hash, r.parties[name].key.public_key, 0)
        work = train_unit(trainer, model, assignment.stream(trainer.genesis.training, 0))
        works[name] = fake_checkpoints(trainer, work, [5]) if name == "cheat" else work
        for blob in (works[name].leaves_blob, works[name].delta_blob, *works[name].checkpoints):
            r.parties[name].blobs.put(blob)
    works["cheat_honest_leaves"] = work.leaves  # what the cheat's unit really replays to
    r.finalize([r.parties[n].tx(chain_id, commitment_for(0, 0, 0, genesis_model_root(g), works[n]))
                for n in ("honest", "cheat")])
    r.finalize([])
    r.finalize([])
    return works


def _worth(r: Round, key: SigningKey) -> int:
    account = r.chain.state.account(key.public_key)
    return account.balance + account.bond


async def _offer(node: Node, tx, start_blob=None) -> str | None:
    try:
        await node.intake.admit(tx, start_blob)
    except MempoolError as exc:
        return exc.reason
    return None


async def test_spam_costs_the_spammers_and_a_true_proof_still_lands_at_once(r, worker):
    works = _commit(r)
    node = Node(r, worker)
    g, chain_id = r.genesis, r.genesis.chain_id
    deposit = g.economics.fraud_proof_deposit
    before = {k.public_key: _worth(r, k) for k in [*SPAMMERS, CHEAT]}
    burned_before = r.chain.state.supply().burned
    honest = works["honest"].leaves

    def bogus(key, nonce):  # an honest segment claimed to replay otherwise
        return sign_tx(key, chain_id, nonce, _proof(HONEST, honest, nonce, sha256(b"made up %d" % nonce)), FEE)
    cheat = works["cheat"].leaves
    true_proof = sign_tx(AUDITOR, chain_id, r.parties["auditor"].nonce,
                         _proof(CHEAT, cheat, 4, works["cheat_honest_leaves"][5]), FEE)
    # a flood of bogus proofs, every spammer's all at once, takes every deciding slot...
    flood = [asyncio.create_task(_offer(node, bogus(key, n))) for key in SPAMMERS for n in range(PROOFS_EACH)]
    await asyncio.sleep(0)
    # ...but the unit's assigned auditor is never turned away as busy: its true proof
    # (the cheat's leaf 5 is not what leaf 4 replays to), sent last, goes in
    assert await _offer(node, true_proof) is None
    outcomes = await asyncio.gather(*flood)
    assert outcomes.count(None) == MAX_DECIDING and set(outcomes) - {None} == {"deciding", "busy"}
    # the spammers try again, one proof at a time: each gets one in, which shows no
    # fraud, and no more after it
    for key in SPAMMERS:
        for nonce in range(PROOFS_EACH):
            await _offer(node, bogus(key, nonce))
        assert await _offer(node, bogus(key, 5)) == "failed_prover"
    assert node.mempool.pending_fraud_proofs(AUDITOR.public_key) == 1
    assert all(node.mempool.pending_fraud_proofs(key.public_key) == 1 for key in SPAMMERS)

    auditor_balance = r.chain.state.account(AUDITOR.public_key).balance
    first = await node.finalize_next()
    assert first.txs[0] == true_proof  # proofs of fraud go first
    assert r.chain.state.fraud_record(0, CHEAT.public_key, 0) == FraudRecord(AUDITOR.public_key, 4)
    bounty = BOND * g.economics.fraud_slash_bps // 10_000 * g.economics.fraud_bounty_bps // 10_000
    # the deposit comes back; the fee is paid
    assert r.chain.state.account(AUDITOR.public_key).balance == auditor_balance + bounty - FEE
    while r.chain.height < CLOSE + 1:
        await node.finalize_next()
    assert all(fraud_proof_count(b.txs) <= FRAUD_PROOFS_PER_BLOCK for b in node.blocks)
    assert len(node.mempool) == 0 and r.chain.height == CLOSE + 1

    state = r.chain.state
    for key in SPAMMERS:
        assert _worth(r, key) == before[key.public_key] - deposit - FEE
        assert state.account(key.public_key).nonce == 1
    assert _worth(r, CHEAT) < before[CHEAT.public_key]
    assert state.supply().burned >= burned_before + len(SPAMMERS) * deposit
    assert total_holdings(state) == expected_total(state.supply())


async def test_a_block_over_the_fraud_proof_budget_is_invalid(r, worker):
    works = _commit(r)
    node = Node(r, worker)
    chain_id, honest = r.genesis.chain_id, works["honest"].leaves
    proofs = [sign_tx(key, chain_id, 0, _proof(HONEST, honest, 1, sha256(b"made up")), FEE)
              for key in SPAMMERS[:FRAUD_PROOFS_PER_BLOCK + 1]]
    for tx in proofs:
        assert await _offer(node, tx) is None
    block = node.view.build_block(r.chain.height + 1, 0)
    assert fraud_proof_count(block.txs) == FRAUD_PROOFS_PER_BLOCK  # the proposer keeps to it
    over = dataclasses.replace(block, txs=tuple(proofs))
    over = dataclasses.replace(over, header=dataclasses.replace(block.header, tx_root=tx_root(over.txs)))
    with pytest.raises(InvalidBlock, match="budget"):
        r.chain.check_block(over)
    assert r.chain.check_block(block) is not None


async def test_a_block_with_a_proof_this_node_never_decided_waits_for_its_replay(r, worker, tmp_path):
    works = _commit(r)
    node = Node(r, worker)
    tx = sign_tx(SPAMMERS[0], r.genesis.chain_id, 0, _proof(HONEST, works["honest"].leaves, 2, sha256(b"x")), FEE)
    assert await _offer(node, tx) is None
    block = node.view.build_block(r.chain.height + 1, 0)
    assert block.txs == (tx,)
    # another validator, following the same chain, that never saw the proof
    with ChainStore.open(tmp_path / "second") as store:
        oracle = BlobWorkOracle(r.genesis, r.validator.blobs)
        second = Chain(r.genesis, store, oracle)
        for height in range(1, r.chain.height + 1):
            second.finalize(r.chain.block(height), CommitCertificate.decode(r.chain.encoded_commit(height)))
        mempool = Mempool(10, r.genesis.consensus.max_tx_bytes, r.genesis.economics)
        intake = FraudIntake(second, mempool, oracle, worker, node.fetch)
        oracle.replay_elsewhere = intake.replay_soon
        missing = []
        view = ConsensusChain(second, mempool, VALIDATOR.public_key, lambda: 0, missing.append)
        assert not view.check_block(block)  # not yet: the replay runs in the worker meanwhile
        assert missing == [tx.body.payload.start_hash]
        assert await intake.decide(tx.body.sender, tx.body.payload) is False  # waits for that replay
        assert view.check_block(block)


async def test_a_start_only_its_prover_holds_is_taken_from_the_upload_once_checked(r, worker):
    works = _commit(r)
    node = Node(r, worker)
    cheat, start = works["cheat"], works["cheat"].checkpoints[4]
    r.parties["cheat"].blobs.delete(cheat.leaves[4].hex())  # the miner withholds it from everyone
    tx = sign_tx(AUDITOR, r.genesis.chain_id, r.parties["auditor"].nonce,
                 _proof(CHEAT, cheat.leaves, 4, works["cheat_honest_leaves"][5]), FEE)
    assert await _offer(node, tx) == "unavailable"
    assert await _offer(node, tx, works["honest"].checkpoints[4]) == "wrong_start"
    # a checkpoint that hashes right but that the proof's Merkle proof does not commit to
    # is never stored: the proof is refused before the blob is asked for
    forged = dataclasses.replace(tx.body.payload, start_proof=(bytes(32),) * 3)
    forged_tx = sign_tx(AUDITOR, r.genesis.chain_id, tx.body.nonce, forged, FEE)
    assert await _offer(node, forged_tx, start) == "bad_proof"
    assert not r.validator.blobs.has(cheat.leaves[4].hex())
    assert await _offer(node, tx, start) is None
    assert r.validator.blobs.has(cheat.leaves[4].hex())  # served to the other validators from here
    block = await node.finalize_next()
    assert block.txs == (tx,)
    assert r.chain.state.fraud_record(0, CHEAT.public_key, 0) == FraudRecord(AUDITOR.public_key, 4)
