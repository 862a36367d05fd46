"""The double-sign guard survives a reopen and refuses a damaged file."""
import pytest

from node.consensus.guard import GuardCorrupted, SignGuard


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
