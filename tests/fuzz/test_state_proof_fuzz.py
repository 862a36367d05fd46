"""A state proof from a peer or an HTTP reply is untrusted input: decoding it raises
ValueError with a line naming the problem, and checking it never raises and never
vouches for a value the state does not hold."""
import json

from hypothesis import given, settings, strategies as st

from node.state.state_tree import StateTree
from node.types.state_proof import StateProof, proven_value, verify_state_proof

ENTRIES = {b"account %d" % i: b"record %d" % i for i in range(20)}
TREE = StateTree.of(ENTRIES.items())

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=70),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["key", "siblings", "leaf", "value"]), json_values) | json_values)
def test_from_json_takes_a_proof_or_raises_value_error(obj):
    try:
        proof = StateProof.from_json(obj)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    proven_value(TREE.root, proof)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=16), st.lists(st.binary(min_size=32, max_size=32), max_size=300),
       st.none() | st.tuples(st.binary(max_size=16), st.binary(max_size=16)), st.binary(max_size=16))
def test_a_made_up_proof_proves_nothing_false(key, siblings, leaf, value):
    proof = StateProof(key, tuple(siblings), leaf)
    if verify_state_proof(TREE.root, key, value, proof):
        assert ENTRIES.get(key) == value
    if verify_state_proof(TREE.root, key, None, proof):
        assert key not in ENTRIES


def test_a_real_proof_survives_json():
    proof = TREE.prove(b"account 3", ENTRIES.__getitem__)
    again = StateProof.from_json(json.loads(json.dumps(proof.to_json())))
    assert verify_state_proof(TREE.root, b"account 3", b"record 3", again)
