"""Challenge randomness no single proposer controls (issue 12, attack 5), through the real
Chain and LevelDB store with real signatures.

The round's challenge seed hashes the beacons (VRF outputs) of the precommits that
finalized the challenge block, as the next block carries them.  The challenge block's
proposer can try any header time and transaction order: the seed stays the same.  A
signer can re-sign its precommit with another nonce, or re-make its beacon proof: the
seed stays the same.  What is left is the next proposer's choice of which quorum of
precommits to carry: sum_{k>=q}^{n} C(n, k) seeds, 5 for this 4-validator committee;
that chooser's own units draw from a later commit another validator carries.

Test genesis: round 0 takes commitments at heights 1-2, height 3 is the challenge block,
height 4 records the challenge from the commit it carries.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools

import nacl.bindings as sodium
import pytest

from node.state.block_execution import execute_block
from node.state.chain import Chain, InvalidBlock
from node.storage.chainstore import ChainStore
from node.types import genesis as g
from node.types import vrf
from node.types.blocks import Block, certificate_from_precommits
from node.types.crypto import SigningKey, sha256, signing_bytes
from node.types.transactions import Transfer, sign_tx
from node.types.votes import PRECOMMIT, VOTE_DOMAIN, VoteBody, beacon_input, sign_vote
from node.uPoW.assignment import assigned_auditors, challenge_seed, challenged_segments
from tests.oracles import NoOracle

VALIDATORS = sorted((SigningKey(sha256(b"grind validator %d" % i)) for i in range(4)),
                    key=lambda k: k.public_key)
USERS = [SigningKey(sha256(b"grind user %d" % i)) for i in range(3)]
MINER = SigningKey(sha256(b"grind miner"))
BASE = g.load_genesis()
GENESIS = dataclasses.replace(
    BASE, chain_id="grind-test",
    validators=tuple(g.Validator(k.public_key, 10) for k in VALIDATORS),
    accounts=tuple(g.Account(k.public_key, 10_000, 0) for k in USERS),
    consensus=dataclasses.replace(BASE.consensus, round_blocks=6, commit_blocks=2))
CHALLENGE_HEIGHT = 3
SEGMENTS = GENESIS.training.steps_per_unit // GENESIS.training.checkpoint_every


def commit_for(block: Block, signers=VALIDATORS):
    body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
    return certificate_from_precommits([sign_vote(k, GENESIS.chain_id, body) for k in signers])


def _transfer(user: int) -> object:
    return sign_tx(USERS[user], GENESIS.chain_id, 0, Transfer(MINER.public_key, 1 + user))


def _chain_to_challenge(path) -> tuple[ChainStore, Chain]:
    """A chain whose head is the block before the challenge block (the same blocks each time)."""
    store = ChainStore.open(path)
    chain = Chain(GENESIS, store, NoOracle(GENESIS))
    for height in range(1, CHALLENGE_HEIGHT):
        block, _ = chain.propose([], VALIDATORS[0].public_key, 1000 * height)
        chain.finalize(block, commit_for(block))
    return store, chain


def _challenge_of(chain: Chain, block_after: Block) -> tuple:
    """What the block after the challenge block records: the seed and the eligible set."""
    record = chain.check_block(block_after).challenge(0)
    return record.hash, record.eligible


def _draws(seed: bytes, eligible) -> tuple:
    """The miner's challenged segments and assigned auditor for its unit 0."""
    return (challenged_segments(seed, MINER.public_key, 0, SEGMENTS, GENESIS.training.audit_segments),
            assigned_auditors(seed, MINER.public_key, 0, list(eligible), GENESIS.training.auditors_per_unit))


def test_a_grinding_challenge_proposer_cannot_move_the_challenge(tmp_path):
    """Twelve challenge blocks, differing in time and transaction order, each finalized on
    its own real chain: one and the same challenge, while the old seed (the challenge
    block's hash) would have let the proposer pick among several draws."""
    orders = list(itertools.permutations(range(3)))
    outcomes, hash_draws, hashes = set(), set(), set()
    for attempt in range(12):
        store, chain = _chain_to_challenge(tmp_path / f"attempt-{attempt}")
        with store:
            txs = [_transfer(user) for user in orders[attempt % len(orders)]]
            block, refused = chain.propose(txs, VALIDATORS[1].public_key, 10_000 + 7 * attempt)
            assert not refused
            chain.finalize(block, commit_for(block))
            after, _ = chain.propose([], VALIDATORS[2].public_key, 20_000)
            chain.finalize(after, commit_for(after))
            record = chain.state.challenge(0)
            assert record.hash == challenge_seed(GENESIS.chain_id, after.last_commit)
            outcomes.add((record.hash, _draws(record.hash, record.eligible)))
            hash_draws.add(_draws(block.hash, record.eligible))
            hashes.add(block.hash)
    assert len(hashes) == 12
    assert len(outcomes) == 1
    assert len(hash_draws) > 1  # what the grinding bought under the old rule


def test_the_next_proposer_chooses_among_the_quorum_subsets_only(tmp_path):
    """The remaining bias, measured: every quorum subset of the four precommits is a valid
    last commit and gives its own seed, C(4,3) + C(4,4) = 5; a sub-quorum is refused."""
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        block, _ = chain.propose([], VALIDATORS[1].public_key, 10_000)
        chain.finalize(block, commit_for(block))
        after, _ = chain.propose([], VALIDATORS[2].public_key, 20_000)
        seeds = set()
        for size in (3, 4):
            for signers in itertools.combinations(VALIDATORS, size):
                seeds.add(_challenge_of(chain, _carrying(chain, after, commit_for(block, signers)))[0])
        assert len(seeds) == 5
        with pytest.raises(InvalidBlock, match="not more than 2/3"):
            chain.check_block(_carrying(chain, after, commit_for(block, VALIDATORS[:2])))


def _carrying(chain: Chain, block: Block, last_commit) -> Block:
    """block carrying another commit of its parent, with the state root that gives (the
    challenge record is part of the state), as its proposer would build it."""
    header = dataclasses.replace(block.header, last_commit_hash=last_commit.hash)
    block = dataclasses.replace(block, header=header, last_commit=last_commit)
    root = chain.state.root_after(execute_block(chain.state, GENESIS, block, chain.oracle).writes)
    return dataclasses.replace(block, header=dataclasses.replace(header, state_root=root))


def _secret_scalar(key: SigningKey) -> int:
    clamped = bytearray(hashlib.sha512(key.seed).digest()[:32])
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    return int.from_bytes(clamped, "little") % vrf.ORDER


def _le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def _sign_with_nonce(key: SigningKey, message: bytes, r: int) -> bytes:
    """An ed25519 signature with a nonce of the signer's choosing: valid, and not the one
    RFC 8032's deterministic nonce gives."""
    big_r = sodium.crypto_scalarmult_ed25519_base_noclamp(_le(r))
    k = int.from_bytes(hashlib.sha512(big_r + key.public_key + message).digest(), "little") % vrf.ORDER
    return big_r + _le((r + k * _secret_scalar(key)) % vrf.ORDER)


def _prove_with_nonce(key: SigningKey, alpha: bytes, k: int) -> bytes:
    """A beacon proof with a nonce of the prover's choosing."""
    x = _secret_scalar(key)
    h = vrf._point(key.public_key, alpha)
    gamma = sodium.crypto_scalarmult_ed25519_noclamp(_le(x), h)
    c = vrf._challenge(key.public_key, h, gamma, sodium.crypto_scalarmult_ed25519_base_noclamp(_le(k)),
                       sodium.crypto_scalarmult_ed25519_noclamp(_le(k), h))
    return gamma + _le(c) + _le((k + c * x) % vrf.ORDER)


def test_a_signer_that_regrinds_its_signature_or_beacon_proof_does_not_move_the_seed(tmp_path):
    """Why the seed is not the signatures: a signer may pick its ed25519 nonce freely and
    make other valid signatures of the same precommit (and other proofs of its beacon);
    the chain accepts them, and the seed, which hashes only the beacons' outputs, is
    unchanged."""
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        block, _ = chain.propose([], VALIDATORS[1].public_key, 10_000)
        chain.finalize(block, commit_for(block))
        after, _ = chain.propose([], VALIDATORS[2].public_key, 20_000)
        honest = commit_for(block)
        seed = _challenge_of(chain, _carrying(chain, after, honest))[0]
        body = honest.vote_body().encode()
        alpha = beacon_input(GENESIS.chain_id, CHALLENGE_HEIGHT)
        grinder = VALIDATORS[2]
        index = next(i for i, s in enumerate(honest.signatures) if s.validator == grinder.public_key)
        for nonce in range(1, 6):
            sig = dataclasses.replace(
                honest.signatures[index],
                signature=_sign_with_nonce(grinder, signing_bytes(VOTE_DOMAIN, GENESIS.chain_id, body), nonce),
                beacon=_prove_with_nonce(grinder, alpha, nonce))
            assert sig != honest.signatures[index]
            ground = dataclasses.replace(honest, signatures=honest.signatures[:index] + (sig,)
                                         + honest.signatures[index + 1:])
            assert ground.hash != honest.hash
            assert _challenge_of(chain, _carrying(chain, after, ground))[0] == seed


def test_a_beacon_proof_of_another_key_or_height_does_not_verify():
    key, other = VALIDATORS[0], VALIDATORS[1]
    alpha = beacon_input(GENESIS.chain_id, CHALLENGE_HEIGHT)
    proof = vrf.prove(key.seed, alpha)
    output = vrf.verified_output(key.public_key, alpha, proof)
    assert output is not None and len(output) == vrf.OUTPUT_SIZE
    assert vrf.verified_output(other.public_key, alpha, proof) is None
    assert vrf.verified_output(key.public_key, beacon_input(GENESIS.chain_id, CHALLENGE_HEIGHT + 1), proof) is None
    assert vrf.verified_output(key.public_key, alpha, vrf.prove(other.seed, alpha)) is None
    assert vrf.verified_output(key.public_key, alpha, proof[:32] + bytes(64)) is None
    # another key's gamma with this key's proof: the output would change, the proof fails
    assert vrf.verified_output(key.public_key, alpha, vrf.prove(other.seed, alpha)[:32] + proof[32:]) is None


def test_a_commit_with_a_forged_beacon_is_refused(tmp_path):
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        block, _ = chain.propose([], VALIDATORS[1].public_key, 10_000)
        commit = commit_for(block)
        alpha = beacon_input(GENESIS.chain_id, CHALLENGE_HEIGHT)
        # a beacon made by someone else for the first signer: valid for its maker only
        forged = dataclasses.replace(commit.signatures[0], beacon=vrf.prove(USERS[0].seed, alpha))
        bad = dataclasses.replace(commit, signatures=(forged,) + commit.signatures[1:])
        with pytest.raises(InvalidBlock, match="beacon does not verify"):
            chain.finalize(block, bad)
        assert chain.height == CHALLENGE_HEIGHT - 1


def _own_draws(record, key: SigningKey) -> tuple:
    seed = record.seed_for(key.public_key)
    return (challenged_segments(seed, key.public_key, 0, SEGMENTS, GENESIS.training.audit_segments),
            assigned_auditors(seed, key.public_key, 0, list(record.eligible), GENESIS.training.auditors_per_unit))


def test_a_proposer_that_mines_cannot_choose_its_own_units_draw(tmp_path):
    """The chooser (block 4's proposer) carries each of the 5 quorums of block 3's commit
    in turn: 5 seeds for everyone else's units, one draw for its own, which comes from
    the commit block 5's proposer carries."""
    grinder = VALIDATORS[2]
    quorums = [s for size in (3, 4) for s in itertools.combinations(VALIDATORS, size)]
    others, own = set(), set()
    for attempt, signers in enumerate(quorums):
        store, chain = _chain_to_challenge(tmp_path / f"attempt-{attempt}")
        with store:
            block, _ = chain.propose([], VALIDATORS[1].public_key, 10_000)
            chain.finalize(block, commit_for(block))
            carrying = _carrying(chain, chain.propose([], grinder.public_key, 20_000)[0], commit_for(block, signers))
            chain.finalize(carrying, commit_for(carrying))
            record = chain.state.challenge(0)
            assert record.chooser == grinder.public_key and record.seed_for(grinder.public_key) is None
            after, _ = chain.propose([], VALIDATORS[3].public_key, 30_000)
            chain.finalize(after, commit_for(after))
            record = chain.state.challenge(0)
            assert record.chooser_hash == challenge_seed(GENESIS.chain_id, after.last_commit)
            others.add(record.seed_for(MINER.public_key))
            own.add((record.seed_for(grinder.public_key), _own_draws(record, grinder)))
    assert len(others) == len(quorums) == 5
    assert len(own) == 1 and next(iter(own))[0] not in others


def test_the_chooser_s_seed_waits_for_a_block_another_validator_proposes(tmp_path):
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        for proposer in (VALIDATORS[1], VALIDATORS[2], VALIDATORS[2]):  # blocks 3, 4 and 5
            block, _ = chain.propose([], proposer.public_key, 10_000 * chain.height)
            chain.finalize(block, commit_for(block))
        record = chain.state.challenge(0)
        assert record.chooser == VALIDATORS[2].public_key and record.seed_for(VALIDATORS[2].public_key) is None
        assert record.seed_for(MINER.public_key) == record.hash
        block, _ = chain.propose([], VALIDATORS[0].public_key, 60_000)  # block 6
        chain.finalize(block, commit_for(block))
        drawn = chain.state.challenge(0)
        assert drawn.seed_for(VALIDATORS[2].public_key) == challenge_seed(GENESIS.chain_id, block.last_commit)
        assert dataclasses.replace(drawn, chooser_hash=record.chooser_hash) == record
