"""The e2e invariant checker fails when it should: fed made-up API snapshots of a fork,
a height going backwards, a stall, an unaudited unit and a leak of coins, it names
the invariant, the height and the node in exactly one line each."""
from node.types.blocks import PAID_AS_PROPOSER, Payment, RoundClose
from tests.e2e.invariants import (ChainObserver, Failure, burned_fees, check_audits,
                                  check_liveness, check_round_closes, check_supply, emitted)

HASH_A = "aa" * 32
HASH_B = "bb" * 32


def _headers(*pairs: tuple[int, str]) -> list[dict]:
    return [{"height": height, "hash": block_hash, "proposer": "00" * 32} for height, block_hash in pairs]


def test_two_nodes_with_different_hashes_at_one_height():
    observer = ChainObserver()
    observer.observe_headers("node-0", _headers((1, "11" * 32), (2, HASH_A)))
    observer.observe_headers("node-1", _headers((1, "11" * 32), (2, HASH_B)))
    assert [f.line() for f in observer.failures] == [
        "invariant block_hash failed at height 2 on node-1: block bbbbbbbbbbbbbbbb but node-0 "
        "has aaaaaaaaaaaaaaaa"]


def test_a_head_from_status_that_forks_from_the_headers():
    observer = ChainObserver()
    observer.observe_headers("node-0", _headers((5, HASH_A)))
    observer.observe_head("node-3", 5, HASH_B)
    assert [f.line() for f in observer.failures] == [
        "invariant block_hash failed at height 5 on node-3: block bbbbbbbbbbbbbbbb but node-0 "
        "has aaaaaaaaaaaaaaaa"]


def test_a_height_that_goes_backwards():
    observer = ChainObserver()
    for height in (3, 4, 9, 7, 9, 10):
        observer.observe_head("node-2", height, f"{height:064x}")
    assert [f.line() for f in observer.failures] == [
        "invariant height_monotonic failed at height 7 on node-2: height went back from 9 to 7"]


def test_agreeing_nodes_and_rising_heights_pass():
    observer = ChainObserver()
    for node in ("node-0", "node-1"):
        observer.observe_headers(node, _headers((1, HASH_A), (2, HASH_B)))
        observer.observe_head(node, 2, HASH_B)
    assert observer.failures == []


def test_a_stall_while_a_quorum_could_meet():
    new_heights = [(0.0, 1), (1.0, 2), (30.0, 3), (31.0, 4)]
    # no quorum 2..12: 29 s without a block, 19 of them with a quorum able to meet
    assert [f.line() for f in check_liveness(new_heights, [(2.0, 12.0)], 32.0, 15.0)] == [
        "invariant liveness failed at height 2 on devnet: no block after it for 29.0 s, "
        "19.0 s of them with a quorum able to meet (at most 15 s)"]
    assert check_liveness(new_heights, [(1.5, 20.0)], 32.0, 15.0) == []


def test_a_stall_at_the_end_of_the_run_counts():
    failures = check_liveness([(0.0, 1), (1.0, 2)], [], 40.0, 30.0)
    assert [f.line() for f in failures] == [
        "invariant liveness failed at height 2 on devnet: no block after it for 39.0 s, "
        "39.0 s of them with a quorum able to meet (at most 30 s)"]


def test_a_round_not_closed_on_a_lagging_node():
    failures = check_round_closes(3, 80, {"node-0": 81, "node-1": 62}, 90.0)
    assert [f.line() for f in failures] == [
        "invariant round_closes failed at height 62 on node-1: round 3 (closing at height 80) "
        "not closed 90 s after the last perturbation healed"]


def _round(round_: int, units: list[dict], rewards: list[dict] = ()) -> dict:
    return {"round": round_, "close_height": 20 * (round_ + 1), "units": units,
            "rewards": list(rewards)}


def _unit(status: str, audits: list[dict]) -> dict:
    return {"miner": "cd" * 32, "unit": 0, "status": status, "audits": audits}


def test_an_accepted_unit_without_an_audit():
    views = [_round(0, [_unit("accepted", [{"auditor": "ef" * 32, "segment": 5}])]),
             _round(1, [_unit("accepted", []), _unit("rejected", [])])]
    assert [f.line() for f in check_audits("node-0", views, mine=True)] == [
        "invariant audited failed at height 40 on node-0: round 1: unit 0 of miner "
        "cdcdcdcdcdcdcdcd accepted without an audit"]


def test_mining_validators_whose_units_are_never_accepted():
    views = [_round(0, [_unit("rejected", [])]), _round(1, [])]
    assert [f.line() for f in check_audits("node-1", views, mine=True)] == [
        "invariant units_accepted failed at height 40 on node-1: no unit accepted in rounds 0..1 "
        "although the validators mine"]
    assert check_audits("node-1", views, mine=False) == []


def test_supply_off_by_a_coin():
    blocks = [{"txs": [{"fee": 100}, {"fee": 101}]}, {"txs": []}, {"txs": [{"fee": 300}]}]
    closes = [RoundClose(round=0, units=(), model_root=bytes(32), eval_loss_bits=0,
                         payments=(Payment(bytes([1]) * 32, PAID_AS_PROPOSER, 100_000),), next_committee=())]
    burned, emission = burned_fees(blocks, 5000), emitted(closes)
    assert (burned, emission) == (50 + 50 + 150, 100_000)
    assert check_supply("node-0", 60, 1_000_000 + 100_000 - 250, 1_000_000, emission, burned) == []
    assert check_supply("node-0", 60, 1_000_000 + 100_000 - 249, 1_000_000, emission, burned) == [
        Failure("supply", 60, "node-0", "balances + bonds 1099751 != genesis 1000000 + emitted "
                                        "100000 - burned fees 250 (off by +1)")]
