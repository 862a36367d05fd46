"""The genesis retention window in the ledger: at a round's close the round that leaves
the window is forgotten on every node alike (the state root says so), its work counts
with it once its epoch's rotation has used them, and the open rounds keep theirs."""
import dataclasses

import pytest

from node.state.records import CarryRecord, round_bytes
from node.state.retention import ROUND_RECORDS, first_kept_round
from node.storage.blobstore import BlobStore
from node.types.transactions import NO_CARRY, sign_tx
from node.uPoW.model_state import genesis_model_blob
from node.uPoW.work import DELTA_MAGIC, LEAVES_MAGIC
from node.work.blob_retention import prune_forgotten_round
from tests.unit import test_round_close as round_close
from tests.state_checks import expected_total, state_digest, total_holdings
from tests.unit.test_round_close import CHEAT, GENESIS, HONEST, KEYS, Network, play_round

WINDOW = 2
SHORT = dataclasses.replace(GENESIS, consensus=dataclasses.replace(GENESIS.consensus, retention_rounds=WINDOW))
ROUND_BLOCKS = SHORT.consensus.round_blocks


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path, SHORT)
    yield network
    network.close()


def _round_keys(state, round_: int) -> list[bytes]:
    return [k for prefix, length in ROUND_RECORDS for k in state.keys(prefix + round_bytes(round_), length)]


def _step_to(net, height: int) -> None:
    while net.validator.height < height:
        _step(net)


def _step(net) -> None:
    # epoch_rounds is 1: a rotation may seat HONEST, who signs from then on
    net.signers = [KEYS[m.pub_key] for m in net.validator.state.committee().members]
    net.step()


def test_a_round_s_records_stay_for_the_window_and_go_at_the_close_that_ends_it(net):
    play_round(net)
    _step_to(net, ROUND_BLOCKS)  # round 0 closes: HONEST accepted, CHEAT slashed
    state = net.validator.state
    kinds = {k[:1] for k in _round_keys(state, 0)}
    assert kinds >= {b"s", b"c", b"w", b"u", b"f"}
    assert state.work_count(0, HONEST.public_key) == 1
    _step_to(net, WINDOW * ROUND_BLOCKS)  # round WINDOW - 1 closes: round 0 is still kept
    assert _round_keys(state, 0) and first_kept_round(SHORT.consensus, net.validator.height) == 0
    before = len(state.entries)
    _step_to(net, (WINDOW + 1) * ROUND_BLOCKS)  # round WINDOW closes: round 0 leaves
    assert _round_keys(state, 0) == [] and first_kept_round(SHORT.consensus, net.validator.height) == 1
    assert state.fraud_record(0, CHEAT.public_key, 0) is None
    # epoch_rounds is 1: round 0's epoch has rotated, so its counts go with it
    assert state.work_count(0, HONEST.public_key) == 0
    assert _round_keys(state, 1) and _round_keys(state, WINDOW)  # seeds of the kept rounds
    assert len(state.entries) < before
    # every node forgot alike: the header's root is the proposer's, the validator's, and
    # the root recomputed from scratch
    head = net.validator.block(net.validator.height).header
    assert net.proposer.state.root() == state.root() == head.state_root == state_digest(state.entries.items())
    assert total_holdings(state) == expected_total(state.supply())


def test_a_miner_s_carried_state_leaves_with_its_round_if_no_later_unit_replaced_it(net):
    """A miner that stays away for the window loses what its next unit could carry: the
    record goes with the round of its last accepted unit, so a departed miner's state is
    not kept for ever, and a unit that names it afterwards is refused."""
    play_round(net)
    _step_to(net, ROUND_BLOCKS)  # round 0 closes: HONEST's unit accepted
    state = net.validator.state
    leaf = round_close.leaves(HONEST)[round_close.SEGMENTS]
    steps = SHORT.training.steps_per_unit
    assert state.carry(HONEST.public_key, 0) == CarryRecord(leaf, steps, 0)
    _step_to(net, WINDOW * ROUND_BLOCKS)  # round WINDOW - 1 closes: round 0 is still kept
    assert state.carry(HONEST.public_key, 0) is not None
    _step_to(net, (WINDOW + 1) * ROUND_BLOCKS)  # round WINDOW closes: round 0 leaves, and the carry
    assert state.carry(HONEST.public_key, 0) is None
    assert net.proposer.state.root() == state.root() == state_digest(state.entries.items())
    late = dataclasses.replace(round_close.commitment(HONEST), round=WINDOW + 1, start_root=state.model().root,
                               carried_leaf=leaf, start_step=steps)
    fresh = dataclasses.replace(late, carried_leaf=NO_CARRY, start_step=0)
    proposer = state.committee().members[0].pub_key
    for unit, refusals in ((late, ["wrong_carry"]), (fresh, [])):
        tx = sign_tx(HONEST, SHORT.chain_id, state.account(HONEST.public_key).nonce, unit, SHORT.economics.min_tx_fee)
        _, refused = net.proposer.propose([tx], proposer, 0)
        assert [exc.reason for _, exc in refused] == refusals


def test_the_state_stops_growing_once_rounds_leave_the_window(net):
    sizes = []
    for round_ in range(3 * WINDOW + 2):
        _step_to(net, (round_ + 1) * ROUND_BLOCKS)
        sizes.append(len(net.validator.state.entries))
    # each empty round writes its seed and challenge; past the window each close forgets
    # as many as the round wrote
    assert sizes[WINDOW:] == [sizes[WINDOW]] * (len(sizes) - WINDOW)
    assert sizes[0] < sizes[WINDOW]


def test_a_node_deletes_the_forgotten_round_s_blobs_and_only_of_the_kind_named(net, tmp_path, monkeypatch):
    blobs = BlobStore(tmp_path / "blobs")
    model = bytes.fromhex(blobs.put(genesis_model_blob(SHORT)))  # what round 0 trains from
    chunk = bytes.fromhex(blobs.put(b"a snapshot chunk, say"))
    named = {}

    def commitment_with_blobs(miner):
        delta = blobs.put(DELTA_MAGIC + miner.public_key)
        leaves = blobs.put(LEAVES_MAGIC + b"".join(round_close.leaves(miner)))
        named[miner.public_key] = (delta, leaves)
        c = original(miner)
        # CHEAT names a blob that is no delta of its own, hoping every node deletes it
        return dataclasses.replace(c, delta_hash=chunk if miner is CHEAT else bytes.fromhex(delta),
                                   leaves_hash=bytes.fromhex(leaves))

    original = round_close.commitment
    monkeypatch.setattr(round_close, "commitment", commitment_with_blobs)
    play_round(net)
    deleted = []
    while net.validator.height < (WINDOW + 1) * ROUND_BLOCKS:
        _step(net)
        deleted.append(prune_forgotten_round(net.validator, blobs))
    # nothing goes before round 0 leaves the window, at the close of round WINDOW
    assert deleted[:-1] == [0] * (len(deleted) - 1) and deleted[-1] > 0
    for delta, leaves in named.values():
        assert not blobs.has(leaves)
    assert not blobs.has(named[HONEST.public_key][0])
    assert not blobs.has(model.hex())  # HONEST's unit was accepted: round 1 trains from another model
    assert blobs.has(chunk.hex())


def test_the_model_a_kept_round_trains_from_is_not_deleted(net, tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    model = blobs.put(genesis_model_blob(SHORT))
    play_round(net)
    net.oracle.aggregate = lambda root, deltas, loss, round_: (root, loss)  # the step is refused: the model stays
    while net.validator.height < (WINDOW + 1) * ROUND_BLOCKS:
        _step(net)
        prune_forgotten_round(net.validator, blobs)
    assert blobs.has(model)
