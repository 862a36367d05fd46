"""Challenge randomness no single proposer controls (issue 12, attack 5), through the real
Chain and LevelDB store with real signatures.

A round's challenge is drawn by choosers: the proposers of the blocks after the
challenge block, each validator once, until they hold more than a third of the power.
Each chooser's seed hashes the beacon (a VRF output) of its own precommit, as its block
carries it: fixed by its key and the height, whatever the challenge block holds, which
quorum the chooser carries, or which nonce signed it.  A chooser's only choice is to
reveal or not, and one that does not is simply not a chooser; an honest chooser's draw
is one no one else knows in advance.

Test genesis: round 0 takes commitments at heights 1-2, height 3 is the challenge block,
blocks 4 and 5 (the audit window) and 6 (the close) may take choosers; four validators
of equal power need two.
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
from node.uPoW.assignment import chooser_seed, unit_challenge
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
    return sign_tx(USERS[user], GENESIS.chain_id, 0, Transfer(MINER.public_key, 1 + user), GENESIS.economics.min_tx_fee)


def _chain_to_challenge(path) -> tuple[ChainStore, Chain]:
    """A chain whose head is the block before the challenge block (the same blocks each time)."""
    store = ChainStore.open(path)
    chain = Chain(GENESIS, store, NoOracle(GENESIS))
    for height in range(1, CHALLENGE_HEIGHT):
        block, _ = chain.propose([], VALIDATORS[0].public_key, 1000 * height)
        chain.finalize(block, commit_for(block))
    return store, chain


def _challenge_of(chain: Chain, block_after: Block):
    """The challenge record block_after would leave."""
    return chain.check_block(block_after).challenge(0)


def _draws(seeds, eligible) -> tuple:
    """The miner's unit 0: each seed's challenged segments and assigned auditors."""
    return unit_challenge(seeds, MINER.public_key, 0, GENESIS.training, eligible).draws


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
            for proposer in (VALIDATORS[2], VALIDATORS[3]):
                after, _ = chain.propose([], proposer.public_key, 10_000 * chain.height)
                chain.finalize(after, commit_for(after))
            record = chain.state.challenge(0)
            assert record.choosers == (VALIDATORS[2].public_key, VALIDATORS[3].public_key)
            assert record.drawn_seeds() == record.seeds
            outcomes.add((record.seeds, _draws(record.seeds, record.eligible)))
            hash_draws.add(_draws([block.hash], record.eligible))
            hashes.add(block.hash)
    assert len(hashes) == 12
    assert len(outcomes) == 1
    assert len(hash_draws) > 1  # what the grinding bought under the old rule


def test_the_carrier_s_only_choice_is_to_reveal_its_own_seed_or_not(tmp_path):
    """Block 4's proposer may carry any quorum of block 3's precommits (a sub-quorum is
    refused): every quorum with its own precommit gives it one and the same seed, every
    quorum without gives it none, and the record then waits for another chooser."""
    carrier = VALIDATORS[2]
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        block, _ = chain.propose([], VALIDATORS[1].public_key, 10_000)
        chain.finalize(block, commit_for(block))
        after, _ = chain.propose([], carrier.public_key, 20_000)
        outcomes = set()
        for size in (3, 4):
            for signers in itertools.combinations(VALIDATORS, size):
                record = _challenge_of(chain, _carrying(chain, after, commit_for(block, signers)))
                assert record.drawn_seeds() is None  # a quarter of the power is not enough
                outcomes.add((carrier in signers, record.choosers, record.seeds))
        own = chooser_seed(GENESIS.chain_id, commit_for(block), carrier.public_key)
        assert outcomes == {(True, (carrier.public_key,), (own,)), (False, (), ())}
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
    """Why the seed is not the signature: the chooser may pick its ed25519 nonce freely and
    make other valid signatures of its own precommit (and other proofs of its beacon);
    the chain accepts them, and its seed, which hashes only the beacon's output, is
    unchanged."""
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        block, _ = chain.propose([], VALIDATORS[1].public_key, 10_000)
        chain.finalize(block, commit_for(block))
        after, _ = chain.propose([], VALIDATORS[2].public_key, 20_000)
        honest = commit_for(block)
        seeds = _challenge_of(chain, _carrying(chain, after, honest)).seeds
        assert len(seeds) == 1
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
            assert _challenge_of(chain, _carrying(chain, after, ground)).seeds == seeds


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


def _finalize(chain: Chain, proposer: SigningKey, signers=VALIDATORS) -> Block:
    block, _ = chain.propose([], proposer.public_key, 10_000 * (chain.height + 1))
    chain.finalize(block, commit_for(block, signers))
    return block


def test_choosers_are_taken_once_each_until_they_hold_more_than_a_third(tmp_path):
    """Block 4's proposer is the first chooser; block 5 by the same validator adds
    nothing; block 6 by another makes the second, and the record is drawn from both seeds."""
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        _finalize(chain, VALIDATORS[1])  # the challenge block
        carried = [_finalize(chain, VALIDATORS[2]), _finalize(chain, VALIDATORS[2])]
        record = chain.state.challenge(0)
        assert record.choosers == (VALIDATORS[2].public_key,) and record.drawn_seeds() is None
        assert carried[1].last_commit.height == 4
        block = _finalize(chain, VALIDATORS[0])
        record = chain.state.challenge(0)
        assert record.choosers == (VALIDATORS[2].public_key, VALIDATORS[0].public_key)
        assert record.drawn_seeds() == (
            chooser_seed(GENESIS.chain_id, carried[0].last_commit, VALIDATORS[2].public_key),
            chooser_seed(GENESIS.chain_id, block.last_commit, VALIDATORS[0].public_key))
        assert (record.chosen_power, record.committee_power) == (20, 40)


def test_a_colluding_chooser_cannot_steer_the_honest_chooser_s_draw(tmp_path):
    """The attack the old rule lost to: block 4's proposer colludes with a miner and tries
    every quorum of block 3's commit, with and without its own precommit.  Each time the
    record is drawn by block 5's honest proposer as well, and that chooser's draw is one
    and the same, in every outcome: the colluder can only add a draw it knows, never
    remove or pick the one it does not."""
    colluder, honest = VALIDATORS[2], VALIDATORS[3]
    honest_draws, outcomes = set(), set()
    quorums = [s for size in (3, 4) for s in itertools.combinations(VALIDATORS, size)]
    for attempt, signers in enumerate(quorums):
        store, chain = _chain_to_challenge(tmp_path / f"attempt-{attempt}")
        with store:
            challenge_block = _finalize(chain, VALIDATORS[1])
            carrying = _carrying(chain, chain.propose([], colluder.public_key, 20_000)[0],
                                 commit_for(challenge_block, signers))
            chain.finalize(carrying, commit_for(carrying))
            _finalize(chain, honest)
            if colluder not in signers:
                _finalize(chain, VALIDATORS[0])  # the colluder skipped: another honest one draws
            record = chain.state.challenge(0)
            seeds = record.drawn_seeds()
            assert seeds is not None and honest.public_key in record.choosers
            mine = seeds[record.choosers.index(honest.public_key)]
            honest_draws.add(_draws([mine], record.eligible))
            outcomes.add(record.seeds)
    assert len(honest_draws) == 1
    assert len(outcomes) == 2  # revealed (colluder + honest) or skipped (two honest)


def test_one_validator_proposing_every_block_after_the_challenge_never_draws_it(tmp_path):
    """A quarter of the power, however many blocks it proposes, is one chooser: no unit
    of the round is drawn, so none can be audited or accepted (round_close rejects them)."""
    store, chain = _chain_to_challenge(tmp_path / "db")
    with store:
        for _ in range(3):
            _finalize(chain, VALIDATORS[2])
        record = chain.state.challenge(0)
        assert record.choosers == (VALIDATORS[2].public_key,) and record.drawn_seeds() is None
