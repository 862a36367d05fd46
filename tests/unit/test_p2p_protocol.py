"""The peer protocol's pure pieces: every handshake outcome, rate limits, bans, per-host
connection limits, owed Blocks answers, seen-cache."""
import pytest

from node.types.crypto import SigningKey
from node.net.p2p_protocol import (BanList, Handshake, HandshakeError, HandshakeState, HostLimits,
                                   PeerRate, Requests, SeenCache, SelfConnection, TokenBucket,
                                   backoff_delay, parse_address)
from node.net.wire import HelloAck, Status, sign_handshake

CHAIN = "test-chain"
GENESIS = bytes(range(32))


def machine(key: SigningKey, challenge: bytes, chain_id: str = CHAIN,
            genesis: bytes = GENESIS, address: str = "127.0.0.1:26656") -> Handshake:
    return Handshake(key, chain_id, genesis, address, height=7, challenge=challenge)


@pytest.fixture
def pair() -> tuple[Handshake, Handshake]:
    return (machine(SigningKey(bytes([1]) * 32), bytes([0xA]) * 32),
            machine(SigningKey(bytes([2]) * 32), bytes([0xB]) * 32))


def exchange(a: Handshake, b: Handshake) -> None:
    """Run both machines as two peers would, each message in order."""
    hello_a, hello_b = a.start(), b.start()
    ack_a, = a.receive(hello_b)
    ack_b, = b.receive(hello_a)
    assert a.receive(ack_b) == [] and b.receive(ack_a) == []


def test_both_sides_establish_and_learn_each_other(pair):
    a, b = pair
    exchange(a, b)
    assert a.state is b.state is HandshakeState.ESTABLISHED
    assert a.peer_key == b.key.public_key and b.peer_key == a.key.public_key
    assert a.peer_hello.height == 7 and a.peer_hello.listen_address == "127.0.0.1:26656"


def test_an_answer_may_arrive_right_after_the_hello(pair):
    # b sends Hello and HelloAck back to back before a has answered anything
    a, b = pair
    hello_a, hello_b = a.start(), b.start()
    ack_b, = b.receive(hello_a)
    ack_a, = a.receive(hello_b)
    a.receive(ack_b)
    b.receive(ack_a)
    assert a.state is b.state is HandshakeState.ESTABLISHED


def failure(a: Handshake, message) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        a.receive(message)
    assert a.state is HandshakeState.FAILED
    assert "\n" not in str(info.value)
    return info.value


def test_wrong_chain_id_fails_without_blame(pair):
    a, _ = pair
    other = machine(SigningKey(bytes([3]) * 32), bytes([0xC]) * 32, chain_id="other")
    a.start()
    error = failure(a, other.start())
    assert "chain 'other'" in str(error) and not error.misbehaving


def test_wrong_genesis_fails_without_blame(pair):
    a, _ = pair
    other = machine(SigningKey(bytes([3]) * 32), bytes([0xC]) * 32, genesis=bytes(32))
    a.start()
    error = failure(a, other.start())
    assert "genesis" in str(error) and not error.misbehaving


def test_connecting_to_ourselves_is_recognised(pair):
    a, _ = pair
    twin = machine(a.key, bytes([0xC]) * 32)
    a.start()
    error = failure(a, twin.start())
    assert isinstance(error, SelfConnection) and not error.misbehaving


def test_our_own_hello_reflected_back_is_refused(pair):
    a, b = pair
    mirror = machine(b.key, a.hello.challenge)
    a.start()
    assert failure(a, mirror.start()).misbehaving


def test_an_unparseable_listen_address_is_refused(pair):
    a, b = pair
    liar = machine(b.key, bytes([0xC]) * 32, address="nowhere")
    a.start()
    assert "listen address" in str(failure(a, liar.start()))


def test_a_bad_signature_is_misbehaviour(pair):
    a, b = pair
    a.start()
    a.receive(b.start())
    error = failure(a, HelloAck(bytes(64)))
    assert str(error) == "bad handshake signature" and error.misbehaving


def test_a_signature_over_someone_elses_challenge_is_refused(pair):
    # a HelloAck recorded on another connection (another challenge) is worthless
    a, b = pair
    a.start()
    a.receive(b.start())
    replayed = sign_handshake(b.key, CHAIN, bytes([0xE]) * 32, a.key.public_key)
    assert failure(a, replayed).misbehaving


def test_a_signature_for_another_verifier_is_refused(pair):
    a, b = pair
    a.start()
    a.receive(b.start())
    someone_else = SigningKey(bytes([9]) * 32).public_key
    relayed = sign_handshake(b.key, CHAIN, a.hello.challenge, someone_else)
    assert failure(a, relayed).misbehaving


def test_a_signature_for_another_chain_is_refused(pair):
    a, b = pair
    a.start()
    a.receive(b.start())
    other_chain = sign_handshake(b.key, "other", a.hello.challenge, a.key.public_key)
    assert failure(a, other_chain).misbehaving


@pytest.mark.parametrize("step", ["before start", "ack first", "second hello", "other message",
                                  "after established"])
def test_messages_out_of_order_fail(pair, step):
    a, b = pair
    hello_b = b.start()
    ack_b = sign_handshake(b.key, CHAIN, a.hello.challenge, a.key.public_key)
    if step == "before start":
        message = hello_b
    elif step == "ack first":
        a.start()
        message = ack_b
    elif step == "second hello":
        a.start()
        a.receive(hello_b)
        message = hello_b
    elif step == "other message":
        a.start()
        message = Status(1, bytes(32))
    else:
        a.start()
        a.receive(hello_b)
        a.receive(ack_b)
        message = ack_b
    error = failure(a, message)
    assert "unexpected" in str(error) and error.misbehaving


def test_a_failed_handshake_stays_failed(pair):
    a, b = pair
    a.start()
    failure(a, HelloAck(bytes(64)))
    failure(a, b.start())


def test_start_twice_is_a_programming_error(pair):
    a, _ = pair
    a.start()
    with pytest.raises(RuntimeError):
        a.start()


@pytest.mark.parametrize("address,expected", [("127.0.0.1:80", ("127.0.0.1", 80)),
                                              ("node-1.example:26656", ("node-1.example", 26656)),
                                              ("[::1]:9000", ("::1", 9000))])
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["", "host", ":80", "host:", "host:0", "host:65536",
                                     "host:http", "host:-1", "h" * 300 + ":80"])
def test_parse_address_refuses(address):
    with pytest.raises(ValueError, match="peer address"):
        parse_address(address)


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate_per_s=4, burst=5)
    assert all(bucket.allow(100.0) for _ in range(5))
    assert not bucket.allow(100.0)
    assert bucket.allow(100.25)  # a quarter second at 4/s is one token
    assert not bucket.allow(100.25)
    assert all(bucket.allow(200.0) for _ in range(5))  # refills up to the burst only
    assert not bucket.allow(200.0)


def test_token_bucket_costs_and_a_clock_stepping_back():
    bucket = TokenBucket(rate_per_s=1, burst=4)
    assert bucket.allow(10.0, cost=3)
    assert not bucket.allow(10.0, cost=2)
    assert not bucket.allow(5.0, cost=2)  # time going back gives no tokens
    assert bucket.allow(11.0, cost=2)


def test_token_bucket_needs_positive_parameters():
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_peer_rate_limits_frames_and_bytes():
    by_count = PeerRate(frames_per_s=1, frame_burst=2, bytes_per_s=1000, byte_burst=1000)
    assert by_count.allow(0.0, 10) and by_count.allow(0.0, 10)
    assert not by_count.allow(0.0, 10)
    by_size = PeerRate(frames_per_s=100, frame_burst=100, bytes_per_s=100, byte_burst=500)
    assert by_size.allow(0.0, 400)
    assert not by_size.allow(0.0, 200)
    assert by_size.allow(2.0, 200)  # 200 bytes back after 2 s


def test_bans_expire():
    bans = BanList()
    key = bytes([7]) * 32
    bans.ban(key, now=100.0, duration=60)
    bans.ban("10.0.0.1", now=100.0, duration=5)
    assert bans.is_banned(key, 159.9) and bans.is_banned("10.0.0.1", 104.0)
    assert not bans.is_banned("10.0.0.1", 105.0)
    assert not bans.is_banned(key, 160.0)
    assert not bans.is_banned("10.0.0.2", 100.0)


def test_a_shorter_ban_does_not_shorten_a_longer_one():
    bans = BanList()
    bans.ban("h", now=0.0, duration=60)
    bans.ban("h", now=1.0, duration=5)
    assert bans.is_banned("h", 30.0)
    assert bans.banned_until("h") == 60.0


def test_ban_list_is_bounded_and_forgets_the_soonest_to_expire():
    bans = BanList(capacity=3)
    for i, duration in enumerate([50, 10, 30]):
        bans.ban(f"h{i}", now=0.0, duration=duration)
    bans.ban("new", now=0.0, duration=40)
    assert not bans.is_banned("h1", 1.0)
    assert all(bans.is_banned(s, 1.0) for s in ["h0", "h2", "new"])


def test_seen_cache_drops_duplicates_and_forgets_the_oldest():
    seen = SeenCache(capacity=3)
    assert seen.add(b"a", 0) and seen.add(b"b", 0) and seen.add(b"c", 0)
    assert not seen.add(b"a", 0)  # a duplicate, and now the most recent
    assert seen.add(b"d", 0)  # evicts b, the least recently seen
    assert len(seen) == 3
    assert b"b" not in seen and b"a" in seen
    assert seen.add(b"b", 0)


def test_seen_cache_forgets_what_is_older_than_its_max_age():
    """At a steady gossip rate the cache holds rate x max_age ids, not its capacity: the
    node's memory stops growing minutes after it starts."""
    seen = SeenCache(capacity=1000, max_age=10.0)
    for t in range(100):
        seen.add(b"%d" % t, float(t))
    assert len(seen) == 11 and b"88" not in seen and b"89" in seen
    assert not seen.add(b"95", 100.0)  # seen again: remembered anew, from now
    assert seen.add(b"500", 104.0) and b"93" not in seen and b"95" in seen


def test_backoff_doubles_up_to_a_cap():
    delays = [backoff_delay(n) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == 5.0 and backoff_delay(10_000) == 5.0


def test_a_peer_owes_one_blocks_answer_per_request():
    requests, peer, other = Requests(), bytes([1]) * 32, bytes([2]) * 32
    assert not requests.answered(peer)  # never asked
    requests.sent(peer)
    requests.sent(peer)
    assert requests.answered(peer) and requests.answered(peer)
    assert not requests.answered(peer)  # both answers settled: a third is unrequested
    requests.sent(other)
    assert not requests.answered(peer) and requests.answered(other)


def test_a_peer_gone_owes_nothing():
    requests, peer = Requests(), bytes([1]) * 32
    requests.sent(peer)
    requests.forget(peer)
    assert not requests.answered(peer)
    requests.forget(peer)  # forgetting a peer that owes nothing is harmless


def test_an_untrusted_host_holds_a_few_connections_at_once():
    hosts = HostLimits(frozenset(), per_host=2, burst=100)
    assert hosts.admit("10.0.0.1", 0.0) is None and hosts.admit("10.0.0.1", 0.0) is None
    assert hosts.admit("10.0.0.1", 0.0) == "2 connections from 10.0.0.1 already"
    assert hosts.admit("10.0.0.2", 0.0) is None  # another host has its own count
    hosts.release("10.0.0.1")
    assert hosts.admit("10.0.0.1", 0.0) is None


def test_a_trusted_host_holds_more_but_still_bounded():
    hosts = HostLimits(frozenset({"127.0.0.1"}))
    assert all(hosts.admit("127.0.0.1", 0.0) is None for _ in range(hosts.trusted_per_host))
    assert hosts.admit("127.0.0.1", 0.0) == f"{hosts.trusted_per_host} connections from 127.0.0.1 already"
    assert hosts.trusted_per_host > hosts.per_host


def test_new_connections_are_throttled_per_host():
    hosts = HostLimits(frozenset(), rate_per_s=2, burst=3)
    for _ in range(3):
        assert hosts.admit("h", 0.0) is None
        hosts.release("h")  # each closes at once: only the rate stops the next
    assert hosts.admit("h", 0.0) == "too many new connections from h; try again later"
    assert hosts.admit("h", 0.2) is not None  # 0.4 of a token so far
    assert hosts.admit("h", 0.5) is None  # one token back after half a second


def test_a_trusted_host_is_throttled_generously():
    hosts = HostLimits(frozenset({"127.0.0.1"}), rate_per_s=1, burst=1, trusted_rate_per_s=10,
                       trusted_burst=20)
    admitted = 0
    while hosts.admit("127.0.0.1", 0.0) is None:
        hosts.release("127.0.0.1")
        admitted += 1
    assert admitted == 20
    assert hosts.admit("127.0.0.1", 0.1) is None  # 10 per second


def test_host_limits_remember_a_bounded_number_of_hosts():
    hosts = HostLimits(frozenset(), rate_per_s=1, burst=1, capacity=2)
    assert hosts.admit("a", 0.0) is None and hosts.admit("b", 0.0) is None
    assert hosts.admit("a", 0.0) is not None  # a's bucket is empty, and now the most recent
    assert hosts.admit("c", 0.0) is None  # forgets b, the host seen least recently
    assert hosts.admit("a", 0.0) is not None  # a is still remembered
    assert hosts.admit("b", 0.0) is None  # b was forgotten: a full bucket again
