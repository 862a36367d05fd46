"""ChainState.keys reads one kind of entry from the ordered keys it maintains: whatever
writes and deletes came before, it must answer what a scan of every entry answers."""
from hypothesis import given, settings
from hypothesis import strategies as st

from node.state.chain_state import ChainState

KEYS = st.binary(min_size=0, max_size=4)
WRITES = st.dictionaries(KEYS, st.one_of(st.none(), st.binary(min_size=1, max_size=3)), max_size=20)


def _scan(state: ChainState, prefix: bytes, length: int) -> list[bytes]:
    return sorted(k for k in state.entries if len(k) == length and k.startswith(prefix))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, st.binary(min_size=1, max_size=3), max_size=20), st.lists(WRITES, max_size=5),
       st.binary(max_size=2), st.integers(0, 4))
def test_keys_answer_what_a_full_scan_answers(initial, batches, prefix, length):
    state = ChainState(initial)
    for writes in batches:
        state.apply_writes(writes)
        assert state.keys(prefix, length) == _scan(state, prefix, length)
    assert state.keys(prefix, length) == _scan(state, prefix, length)
