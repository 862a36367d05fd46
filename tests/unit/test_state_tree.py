"""The state's sparse Merkle tree: built at once or write by write, the same root as
the from-scratch reference (tests/state_checks.py), whatever the order of writes;
proofs of presence and absence that verify against the root and nothing else."""
import dataclasses

from hypothesis import given, settings, strategies as st

from node.state.state_tree import StateTree
from node.types.state_proof import EMPTY, StateProof, verify_state_proof
from tests.state_checks import state_digest

keys = st.binary(min_size=1, max_size=12)
values = st.binary(max_size=16)
writes = st.lists(st.dictionaries(keys, st.none() | values, max_size=6), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=40), writes)
def test_the_root_written_step_by_step_is_the_root_from_scratch(start, steps):
    tree, entries = StateTree.of(start.items()), dict(start)
    for step in steps:
        before = tree.root
        after = tree.with_writes(step)
        assert tree.root == before  # the committed tree is left as it was
        for key, value in step.items():
            if value is None:
                entries.pop(key, None)
            else:
                entries[key] = value
        tree = after
        assert tree.root == state_digest(entries.items()) == StateTree.of(entries.items()).root


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, values, max_size=40), keys, values)
def test_a_proof_proves_the_entry_or_its_absence_and_nothing_else(entries, key, other_value):
    tree = StateTree.of(entries.items())
    proof = tree.prove(key, entries.__getitem__)
    value = entries.get(key)
    assert verify_state_proof(tree.root, key, value, proof)
    if other_value != value:
        assert not verify_state_proof(tree.root, key, other_value, proof)
    if value is not None:
        assert not verify_state_proof(tree.root, key, None, proof)
    # against any other state's root it fails
    changed = tree.with_writes({key: other_value + b"!"})
    assert not verify_state_proof(changed.root, key, value, proof)


def test_an_empty_state_has_the_empty_root_and_proves_every_absence():
    tree = StateTree.of([])
    assert tree.root == EMPTY
    assert verify_state_proof(EMPTY, b"k", None, tree.prove(b"k", {}.__getitem__))


def test_a_tampered_sibling_or_a_moved_entry_does_not_verify():
    entries = {b"key %d" % i: b"value %d" % i for i in range(50)}
    tree = StateTree.of(entries.items())
    proof = tree.prove(b"key 7", entries.__getitem__)
    assert verify_state_proof(tree.root, b"key 7", b"value 7", proof)
    flipped = bytes([proof.siblings[0][0] ^ 1]) + proof.siblings[0][1:]
    assert not verify_state_proof(tree.root, b"key 7", b"value 7",
                                  dataclasses.replace(proof, siblings=(flipped, *proof.siblings[1:])))
    # another entry's proof, presented as a proof of absence of key 7
    other = tree.prove(b"key 8", entries.__getitem__)
    assert not verify_state_proof(tree.root, b"key 7", None, dataclasses.replace(other, key=b"key 7"))
    # the entry itself, claimed to sit one level higher or lower
    assert not verify_state_proof(tree.root, b"key 7", b"value 7",
                                  dataclasses.replace(proof, siblings=proof.siblings[1:]))
    assert not verify_state_proof(tree.root, b"key 7", b"value 7",
                                  dataclasses.replace(proof, siblings=(*proof.siblings, EMPTY)))


def test_a_write_costs_about_log_n_hashes_not_n():
    """Counted, not timed: the inner nodes a write makes are those on its path."""
    entries = {i.to_bytes(4, "big"): b"v" for i in range(4096)}
    tree = StateTree.of(entries.items())
    proof = tree.prove((7).to_bytes(4, "big"), entries.__getitem__)
    assert 8 <= len(proof.siblings) <= 40  # log2(4096) = 12, and a few single-child levels


def test_the_json_form_round_trips():
    entries = {b"a": b"1", b"b": b"2", b"c": b"3"}
    proof = StateTree.of(entries.items()).prove(b"b", entries.__getitem__)
    assert StateProof.from_json(proof.to_json()) == proof
