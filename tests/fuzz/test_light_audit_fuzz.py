"""The light-audit node (`uponode audit`) against full nodes that answer garbage.

Two fake full nodes, real aiohttp servers on 127.0.0.1, answer every request with
what hypothesis draws: random bytes, truncated or mistyped JSON, wrong status codes
and content types, blocks that decode but do not verify.  Whatever they send, the
light auditor logs a line naming the node, asks the next one, keeps running, and
stops cleanly when told to."""
import asyncio
import dataclasses
import json
import logging

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.storage.home import init_home
from node.types.blocks import EMPTY_COMMIT, NO_CLOSE, Block, BlockHeader, tx_root
from node.verify.light_audit import LightAuditor

EXAMPLES = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
RUN_LIMIT_S = 20  # a poll against local servers takes milliseconds


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


NOT_FOUND = Reply(404, "application/json", b'{"error": "not found"}')

STATUSES = st.sampled_from([200, 200, 200, 201, 301, 400, 404, 418, 422, 500, 503])
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "text/html",
                                 "application/octet-stream", "application/json; charset=latin-1"])
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _bodies(objects: st.SearchStrategy) -> st.SearchStrategy:
    """Random bytes, the JSON of objects, that JSON cut short, or JSON nested deeper
    than a parser goes."""
    def cut(text: str) -> st.SearchStrategy:
        return st.integers(0, max(0, len(text) - 1)).map(lambda n: text[:n].encode())
    return st.one_of(st.binary(max_size=200), objects.map(lambda o: json.dumps(o).encode()),
                     objects.map(json.dumps).flatmap(cut),
                     st.sampled_from([b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000]))


def _replies(objects: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(Reply, STATUSES, CONTENT_TYPES, _bodies(objects | JSON_VALUES))


def _u64s() -> st.SearchStrategy:
    return st.integers(0, 2**64 - 1)


ACCOUNT_FIELDS = ("balance", "nonce", "bond", "pending_nonce")
# a well-formed account now and then, so that the auditor goes on to send transactions
ACCOUNTS = (st.fixed_dictionaries({name: _u64s() for name in ACCOUNT_FIELDS})
            | st.dictionaries(st.sampled_from(ACCOUNT_FIELDS), SCALARS | _u64s(), max_size=4))
TX_REPLIES = st.fixed_dictionaries({"hash": st.binary(min_size=32, max_size=32).map(bytes.hex)}) | \
    st.fixed_dictionaries({"error": st.text(max_size=30)})
# nothing here decodes as a block: raw is not a string, not hex, or hex of a few bytes
UNREADABLE_BLOCKS = st.fixed_dictionaries({"raw": st.one_of(
    SCALARS, st.binary(max_size=64).map(bytes.hex), st.text("0123456789abcdef", max_size=9))})


@dataclasses.dataclass
class FakeFullNode:
    """Answers GET /blocks/..., GET /accounts/... and POST /txs with the replies given,
    anything else with a 404, and records what it was asked, in order, in asked."""
    blocks: Reply | dict[int, Reply]
    accounts: Reply = NOT_FOUND
    txs: Reply = NOT_FOUND
    asked: list = dataclasses.field(default_factory=list)
    address: str = ""

    async def _answer(self, request: web.Request) -> web.Response:
        self.asked.append((self.address, f"{request.method} {request.path}"))
        kind, _, rest = request.path.strip("/").partition("/")
        if kind == "blocks":
            reply = self.blocks.get(int(rest), NOT_FOUND) if isinstance(self.blocks, dict) \
                else self.blocks
        else:
            reply = {"accounts": self.accounts, "txs": self.txs}.get(kind, NOT_FOUND)
        return web.Response(status=reply.status, body=reply.body,
                            headers={"Content-Type": reply.content_type})

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.address = "127.0.0.1:%d" % runner.addresses[0][1]
        return runner


class StopAfterPolls(asyncio.Event):
    """The stop event for LightAuditor.run, set when run begins its polls-th wait
    between polls: run returns after that many polls."""

    def __init__(self, polls: int):
        super().__init__()
        self.polls = polls

    async def wait(self) -> bool:
        self.polls -= 1
        if self.polls <= 0:
            self.set()
        return await super().wait()


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def naming(self, address: str, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records
                if address in r.getMessage() and r.levelno >= level]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return init_home(tmp_path_factory.mktemp("light-audit-fuzz") / "home")


@pytest.fixture(scope="module")
def records():
    handler = Records()
    logger = logging.getLogger("uponode.light")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _follow(home, records: Records, nodes: list[FakeFullNode], polls: int) -> None:
    """Run a light auditor following nodes for polls polls; it must return, not raise."""
    records.records.clear()

    async def main() -> None:
        runners = [await node.start() for node in nodes]
        try:
            auditor = LightAuditor(home, [node.address for node in nodes])
            await asyncio.wait_for(auditor.run(StopAfterPolls(polls)), RUN_LIMIT_S)
        finally:
            for runner in runners:
                await runner.cleanup()

    asyncio.run(main())


@EXAMPLES
@given(first_block=_replies(UNREADABLE_BLOCKS), second_block=_replies(UNREADABLE_BLOCKS),
       accounts=st.tuples(_replies(ACCOUNTS), _replies(ACCOUNTS)),
       txs=st.tuples(_replies(TX_REPLIES), _replies(TX_REPLIES)))
def test_garbage_is_logged_naming_the_node_and_the_next_node_asked(home, records, first_block,
                                                                   second_block, accounts, txs):
    asked: list = []
    first = FakeFullNode(first_block, accounts[0], txs[0], asked)
    second = FakeFullNode(second_block, accounts[1], txs[1], asked)
    _follow(home, records, [first, second], polls=1)
    assert (second.address, "GET /blocks/1") in asked, "the second node was never asked"
    # every first reply to GET /blocks/1 is unreadable, a 404 (logged at debug) or worse
    assert records.naming(first.address), asked


def _block(height: int, chain_id: str, prev_hash: bytes, body_matches: bool) -> Block:
    header = BlockHeader(chain_id=chain_id, height=height, round=0, time_ms=0, prev_hash=prev_hash,
                         last_commit_hash=bytes(32), tx_root=tx_root(()) if body_matches else bytes(32),
                         close_hash=NO_CLOSE, state_root=bytes(32), proposer=bytes(32))
    return Block(header=header, txs=(), last_commit=EMPTY_COMMIT)


def _block_replies(home) -> st.SearchStrategy:
    """Blocks 1 and 2 that decode but never verify: at best they link to the genesis,
    but block 2 carries no commit of block 1."""
    genesis = home.genesis
    blocks = st.builds(_block, st.sampled_from([1, 1, 2, 5]),
                       st.sampled_from([genesis.chain_id, genesis.chain_id, "another-chain"]),
                       st.sampled_from([bytes.fromhex(genesis.hash), bytes(32)]), st.booleans())
    replies = st.tuples(CONTENT_TYPES, blocks).map(lambda r: Reply(
        200, r[0], json.dumps({"raw": r[1].encode().hex()}).encode()))
    return st.fixed_dictionaries({1: replies, 2: replies})


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_block_that_does_not_verify_is_logged_once_and_the_next_node_asked_first(
        home, records, data):
    asked: list = []
    liar = FakeFullNode(data.draw(_block_replies(home)), asked=asked)
    other = FakeFullNode(data.draw(_replies(UNREADABLE_BLOCKS)), asked=asked)
    _follow(home, records, [liar, other], polls=2)
    warnings = records.naming(liar.address, logging.WARNING)
    assert len(warnings) == 1 and "block" in warnings[0], warnings
    block_requests = [who for who, what in asked if what == "GET /blocks/1"]
    # the first poll asks the liar first; the second, after its block failed, the other
    assert block_requests[:3] == [liar.address, other.address, liar.address], asked
