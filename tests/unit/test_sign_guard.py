"""The double-sign guard survives a reopen and refuses a damaged file."""
import hashlib
import struct

import pytest

from node.consensus.guard import MAX_LOGGED, GuardCorrupted, SignGuard


def test_a_recorded_step_is_read_back(tmp_path):
    guard = SignGuard(tmp_path / "guard")
    assert guard.load() is None
    guard.record(7, 2, 1, b"prevote")
    guard.record(7, 2, 2, b"precommit")
    assert SignGuard(tmp_path / "guard").load() == (7, 2, 2, b"precommit")


@pytest.mark.parametrize("damage", [lambda b: b[:-1], lambda b: bytes([b[0] ^ 1]) + b[1:], lambda b: b""])
def test_a_damaged_guard_file_is_refused(tmp_path, damage):
    guard = SignGuard(tmp_path / "guard")
    guard.record(3, 0, 1, b"vote")
    path = tmp_path / "guard"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(GuardCorrupted, match="damaged"):
        guard.load()


def test_a_lock_is_read_back(tmp_path):
    guard = SignGuard(tmp_path / "guard")
    assert guard.load_lock() is None
    guard.record_lock(3, b"block bytes")
    assert SignGuard(tmp_path / "guard").load_lock() == (3, b"block bytes")


def test_the_votes_of_the_height_are_kept_to_send_again(tmp_path):
    guard = SignGuard(tmp_path / "guard")
    assert guard.signed_at(7) == []
    guard.record(7, 0, 0, b"proposal r0")
    guard.record(7, 0, 1, b"prevote r0")
    guard.record(7, 0, 2, b"precommit r0")
    guard.record(7, 1, 0, b"proposal r1")
    again = SignGuard(tmp_path / "guard")
    # an earlier proposal is not kept: only the last message may be one
    assert again.signed_at(7) == [b"prevote r0", b"precommit r0", b"proposal r1"]
    assert again.load() == (7, 1, 0, b"proposal r1")
    assert again.signed_at(6) == []
    again.record(8, 0, 1, b"prevote h8")
    assert SignGuard(tmp_path / "guard").signed_at(8) == [b"prevote h8"]


def test_the_log_of_a_height_is_bounded(tmp_path):
    guard = SignGuard(tmp_path / "guard")
    for round_ in range(MAX_LOGGED):
        guard.record(3, round_, 1, b"prevote %d" % round_)
        guard.record(3, round_, 2, b"precommit %d" % round_)
    kept = SignGuard(tmp_path / "guard").signed_at(3)
    assert len(kept) == MAX_LOGGED and kept[-1] == b"precommit %d" % (MAX_LOGGED - 1)


def test_a_guard_file_of_the_first_format_still_loads(tmp_path):
    """Before the height's votes were logged the file held the last step and message."""
    body = struct.pack(">QIB", 5, 1, 2) + b"precommit"
    (tmp_path / "guard").write_bytes(body + hashlib.sha256(body).digest())
    guard = SignGuard(tmp_path / "guard")
    assert guard.load() == (5, 1, 2, b"precommit")
    assert guard.signed_at(5) == [b"precommit"]
    guard.record(5, 2, 1, b"prevote")
    assert SignGuard(tmp_path / "guard").signed_at(5) == [b"precommit", b"prevote"]


def test_a_truncated_log_is_refused(tmp_path):
    guard = SignGuard(tmp_path / "guard")
    guard.record(3, 0, 1, b"prevote")
    raw = (tmp_path / "guard").read_bytes()
    body = raw[:-32][:-2]  # cut into the message, then re-checksummed: the log is damaged
    (tmp_path / "guard").write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(GuardCorrupted, match="damaged"):
        SignGuard(tmp_path / "guard").load()
