"""The round schedule and the draws made from chain randomness: which heights take
what, and which units, segments and auditors a hash picks."""
import pytest

from node.types.crypto import sha256
from node.uPoW.assignment import assign_unit, assigned_auditors, challenged_segments
from node.uPoW.rounds import AGGREGATE, AUDIT, CHALLENGE, TRAIN, RoundSchedule

SCHEDULE = RoundSchedule(round_blocks=6, commit_blocks=2)
MINER = sha256(b"miner")
AUDITORS = [sha256(b"auditor %d" % i) for i in range(8)]


def test_phases_of_one_round_in_order():
    assert [SCHEDULE.phase(h) for h in range(1, 13)] == [
        TRAIN, TRAIN, CHALLENGE, AUDIT, AUDIT, AGGREGATE] * 2


@pytest.mark.parametrize("round_", [0, 1, 7])
def test_heights_and_windows_of_a_round(round_):
    s = SCHEDULE
    first = round_ * 6 + 1
    assert s.start_height(round_) == first - 1
    assert all(s.round_of(h) == round_ for h in range(first, first + 6))
    assert s.commit_deadline(round_) == first + 1
    assert s.challenge_height(round_) == first + 2
    assert list(s.audit_window(round_)) == [first + 3, first + 4]
    assert s.close_height(round_) == first + 5
    assert [h for h in range(first, first + 6) if s.is_close(h)] == [first + 5]


def test_height_zero_closes_nothing():
    assert not SCHEDULE.is_close(0)


def test_the_smallest_round_still_has_an_audit_block():
    s = RoundSchedule(round_blocks=4, commit_blocks=1)
    assert [s.phase(h) for h in range(1, 5)] == [TRAIN, CHALLENGE, AUDIT, AGGREGATE]
    assert list(s.audit_window(0)) == [3]


def test_a_unit_assignment_depends_on_each_of_its_inputs():
    start = sha256(b"round start")
    base = assign_unit(start, MINER, 0)
    assert assign_unit(start, MINER, 0) == base
    others = [assign_unit(sha256(b"other start"), MINER, 0), assign_unit(start, AUDITORS[0], 0),
              assign_unit(start, MINER, 1)]
    assert len({base.seed, *(o.seed for o in others)}) == 4
    assert len({base.data_seed, *(o.data_seed for o in others)}) == 4
    assert base.shard == 0  # the devnet model is one shard


@pytest.mark.parametrize("draws", [0, 1, 3, 50])
def test_challenged_segments_always_include_the_last(draws):
    for i in range(20):
        segments = challenged_segments(sha256(b"challenge %d" % i), MINER, 0, 10, draws)
        assert segments[-1] == 9
        assert list(segments) == sorted(set(segments))
        assert all(0 <= s < 10 for s in segments)
        assert 1 <= len(segments) <= draws + 1


def test_challenged_segments_are_a_function_of_the_challenge():
    a = challenged_segments(sha256(b"c"), MINER, 0, 1000, 5)
    assert a == challenged_segments(sha256(b"c"), MINER, 0, 1000, 5)
    drawn = {challenged_segments(sha256(b"c %d" % i), MINER, 0, 1000, 5) for i in range(10)}
    assert len(drawn) > 1


def test_assigned_auditors_are_distinct_and_never_the_miner():
    for i in range(30):
        challenge = sha256(b"challenge %d" % i)
        chosen = assigned_auditors(challenge, MINER, 0, AUDITORS + [MINER, AUDITORS[0]], 4)
        assert len(chosen) == 4 and len(set(chosen)) == 4
        assert MINER not in chosen and set(chosen) <= set(AUDITORS)
        assert chosen == assigned_auditors(challenge, MINER, 0, list(reversed(AUDITORS)) + [MINER], 4)


def test_assigned_auditors_stop_when_the_pool_runs_out():
    assert assigned_auditors(sha256(b"c"), MINER, 0, [MINER, AUDITORS[0]], 3) == (AUDITORS[0],)
    assert assigned_auditors(sha256(b"c"), MINER, 0, [MINER], 3) == ()
