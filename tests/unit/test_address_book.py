"""The peer address book: what a peer's advertised list may add, how dialing scores and
ages entries, a flood of made-up addresses that cannot push out the ones that worked,
and the book's file (a damaged one only costs the addresses)."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from node.net import address_book
from node.net.address_book import MAX_AGE_S, MAX_FAILURES, MAX_PER_REPLY, AddressBook

OWN = "127.0.0.1:26600"


def test_learns_dialable_addresses_only_and_at_most_a_replys_worth():
    book = AddressBook(OWN)
    assert book.learn([OWN, "0.0.0.0:26601", "[::]:26602", "nohost", "a:b", 7, "10.0.0.1:26600"], 1.0) == 1
    assert list(book.entries) == ["10.0.0.1:26600"]
    assert book.learn([f"10.0.1.{i}:26600" for i in range(100)], 2.0) == MAX_PER_REPLY
    assert book.learn(["10.0.0.1:26600"], 3.0) == 0 and book.entries["10.0.0.1:26600"].last_seen == 3.0


def test_dialing_scores_and_age_drops():
    book = AddressBook(OWN)
    book.learn(["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"], 10.0)
    book.connected("10.0.0.3:3", 20.0)
    book.failed("10.0.0.1:1")
    # the one reached first, then the one not yet tried, then the one that failed
    assert book.candidates(set(), 5) == ["10.0.0.3:3", "10.0.0.2:2", "10.0.0.1:1"]
    assert book.candidates({"10.0.0.3:3"}, 1) == ["10.0.0.2:2"]
    for _ in range(MAX_FAILURES - 1):
        book.failed("10.0.0.1:1")
    assert "10.0.0.1:1" not in book.entries
    book.age(10.0 + MAX_AGE_S + 1)
    assert list(book.entries) == ["10.0.0.3:3"]  # seen at 20: not yet too old


def test_a_flood_of_made_up_addresses_keeps_the_ones_that_worked(monkeypatch):
    monkeypatch.setattr(address_book, "MAX_ADDRESSES", 50)
    book = AddressBook(OWN)
    good = [f"10.0.0.{i}:26600" for i in range(10)]
    for address in good:
        book.connected(address, 1.0)
    for round_ in range(100):  # a lying peer's reply at every exchange, each newer than the last
        book.learn([f"192.0.2.{round_}:{port}" for port in range(MAX_PER_REPLY)], 2.0 + round_)
    assert len(book.entries) == 50 and all(a in book.entries for a in good)
    assert book.candidates(set(), 10) == sorted(good)


def test_the_book_survives_a_restart_and_a_damaged_file(tmp_path, caplog):
    path = tmp_path / "peers.json"
    assert AddressBook.load(path, OWN).entries == {}  # no file yet
    book = AddressBook(OWN)
    book.learn(["10.0.0.1:1"], 5.0)
    book.connected("10.0.0.2:2", 6.0)
    book.failed("10.0.0.1:1")
    book.save(path)
    assert AddressBook.load(path, OWN).entries == book.entries
    for damaged in ("{", "[]", json.dumps({"10.0.0.1:1": {"last_seen": "x"}}),
                    json.dumps({"10.0.0.1:1": {"last_seen": 1, "failures": -1, "reached": False}}),
                    json.dumps({"10.0.0.1:1": {"last_seen": float("inf"), "failures": 0, "reached": False}})):
        path.write_text(damaged)
        assert AddressBook.load(path, OWN).entries == {}
    assert "ignoring the peer address book" in caplog.text


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
       | st.dictionaries(st.text(max_size=30), st.dictionaries(st.text(max_size=10), st.integers() | st.floats()
                                                                | st.text(max_size=5) | st.booleans(), max_size=4),
                         max_size=5).map(lambda d: json.dumps(d).encode()))
def test_any_file_loads_as_a_book_or_none(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("book") / "peers.json"
    path.write_bytes(raw)
    book = AddressBook.load(path, OWN)
    assert all(isinstance(a, str) for a in book.entries)


@pytest.mark.parametrize("addresses", [[None], [{"address": 1}], ["x" * 1000 + ":1"]])
def test_learning_junk_adds_nothing(addresses):
    assert AddressBook(OWN).learn(addresses, 1.0) == 0
