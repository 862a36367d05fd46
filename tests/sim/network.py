"""A seeded, deterministic discrete-event network that drives consensus cores.

In the manner of indy-plenum's sim_network: a virtual clock, a priority queue of deliveries
and timers, and faults chosen per message type and per (src, dst) link: drops, delays
(which also reorder), duplicates, and partitions that split the nodes for a while and heal.
After `gst_ms` (global stabilisation time) no message is dropped any more and delays stay
bounded, which is the condition under which Tendermint promises to decide.

Each node drives one ConsensusCore at a time, the way a real node would: it persists what
RecordSigned/RecordLock ask for, re-sends its own messages of the current height every
`gossip_ms` (gossip's eventual delivery), answers a peer that is behind with the decided block
and its certificate (block sync), and keeps messages for heights it has not reached yet.

Byzantine behaviour is a property of a node: twins (two nodes with one key, each honest on
its own), an equivocating proposer, a double voter, and amnesia (a restart that forgets the
last signed step and the lock).  Honest nodes may also crash and restart, keeping both.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import heapq
import random
from typing import Callable, Iterator

from node.types import crypto
from node.types.blocks import Block, CommitCertificate
from node.types.votes import NIL_HASH, PRECOMMIT, Vote, VoteBody, sign_vote
from node.consensus.core import (Broadcast, ConsensusCore, Decide, Evidence, Lock, RecordLock,
                                 RecordSigned, ScheduleTimeout, SignedStep, Timeout, TimeoutConfig)
from node.types.proposal import Proposal, sign_proposal
from node.types.crypto import SigningKey
from node.state.ledger import Committee, CommitteeMember
from node.consensus.commits import InvalidCommit, verify_commit
from tests.sim.app import CHAIN_ID, ChainApp


class Fault(enum.Enum):
    HONEST = "honest"
    TWIN = "twin"  # shares its key with another node; each of the two runs an honest core
    EQUIVOCATING_PROPOSER = "equivocating proposer"  # a different block to each half of the peers
    DOUBLE_VOTER = "double voter"  # a second vote for another hash to half of the peers
    AMNESIA = "amnesia"  # restarts forgetting its last signed step and its lock


@dataclasses.dataclass(frozen=True)
class CatchUp:
    """Block sync: a decided block and the certificate that makes it final."""
    block: Block
    certificate: CommitCertificate

    @property
    def height(self) -> int:
        return self.block.header.height


Message = Proposal | Vote | CatchUp


def message_type(message: Message) -> str:
    if isinstance(message, Vote):
        return "prevote" if message.body.kind != PRECOMMIT else "precommit"
    return "proposal" if isinstance(message, Proposal) else "catchup"


def message_key(message: Message) -> bytes:
    return b"catch-up" + message.block.hash if isinstance(message, CatchUp) else message.encode()


def message_height(message: Message) -> int:
    return message.body.height if isinstance(message, Vote) else message.height


@dataclasses.dataclass(frozen=True)
class LinkFaults:
    """What happens to a message on a link before GST (after it, only the delay applies)."""
    drop: float = 0.0
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 20)


@dataclasses.dataclass(frozen=True)
class Partition:
    """From start_ms to heal_ms, messages between different groups are lost."""
    start_ms: int
    heal_ms: int
    groups: tuple[frozenset[int], ...]

    def separates(self, now: int, src: int, dst: int) -> bool:
        return self.start_ms <= now < self.heal_ms and not any(
            src in g and dst in g for g in self.groups)


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    validator: int  # index of the key it signs with
    fault: Fault = Fault.HONEST
    restart_at_ms: int | None = None  # a crash and restart (amnesia: forgetting its state)


@dataclasses.dataclass(frozen=True)
class Scenario:
    seed: int
    powers: tuple[int, ...]
    nodes: tuple[NodeSpec, ...]
    gst_ms: int
    faults: LinkFaults = LinkFaults()  # before GST, for every message type and link
    type_faults: tuple[tuple[str, LinkFaults], ...] = ()  # overrides per message type
    link_faults: tuple[tuple[tuple[int, int], LinkFaults], ...] = ()  # overrides per (src, dst)
    partitions: tuple[Partition, ...] = ()
    stable_delay_ms: tuple[int, int] = (1, 20)  # after GST
    gossip_ms: int = 2000
    commit_wait_ms: int = 1000  # between deciding a height and starting the next (a block interval)
    timeouts: TimeoutConfig = TimeoutConfig()


@dataclasses.dataclass
class SafetyChecker:
    """Every decision of every node; two different blocks at one height is a violation."""
    decided: dict[int, dict[bytes, list[int]]] = dataclasses.field(default_factory=dict)

    def record(self, node: int, height: int, block_hash: bytes) -> None:
        self.decided.setdefault(height, {}).setdefault(block_hash, []).append(node)

    def violations(self) -> list[tuple[int, dict[bytes, list[int]]]]:
        return [(h, by_hash) for h, by_hash in sorted(self.decided.items()) if len(by_hash) > 1]


class SimNode:
    def __init__(self, index: int, spec: NodeSpec, key: SigningKey, sim: "Simulation"):
        self.index = index
        self.spec = spec
        self.key = key
        self.sim = sim
        self.app = ChainApp(key.public_key, nonce=bytes([index]))  # twins build different blocks
        self.commits: dict[int, CatchUp] = {}
        self.last_signed: SignedStep | None = None  # as persisted through RecordSigned
        self.lock: Lock | None = None  # as persisted through RecordLock
        self.sent: list[tuple[Message, tuple[int, ...]]] = []  # own messages of this height
        self.own: set[bytes] = set()  # their encodings
        self.seen: dict[bytes, Proposal | Vote] = {}  # others' messages of this height, to relay
        self.future: dict[int, dict[bytes, tuple[int, Message]]] = {}
        self.evidence: list[Evidence] = []
        self.generation = 0  # timers of a core that was replaced are stale
        self.core: ConsensusCore | None = None  # None between heights

    @property
    def honest(self) -> bool:
        return self.spec.fault == Fault.HONEST

    def _new_core(self) -> ConsensusCore:
        self.generation += 1
        return ConsensusCore(CHAIN_ID, self.app.height, self.sim.validators, self.key,
                             self.sim.scenario.timeouts, self.app.build_block, self.app.check_block,
                             last_signed=self.last_signed, lock=self.lock)

    def begin_height(self) -> None:
        self.core = self._new_core()
        self.process(self.core.start())
        for src, message in self.future.pop(self.app.height, {}).values():
            self.receive(src, message)

    def restart(self) -> None:
        if self.spec.fault == Fault.AMNESIA:
            self.last_signed, self.lock, self.sent, self.own = None, None, [], set()
        self.seen, self.future = {}, {}  # what was only in memory
        self.begin_height()
        # a driver persists what it signs with the step (a write-ahead log), and replays it, or
        # a vote it can no longer sign again might be lost and stall the round
        for message, _ in list(self.sent):
            self.process(self.core.receive(message))

    def receive(self, src: int, message: Message) -> None:
        height = message_height(message)
        if height < self.app.height:
            if not isinstance(message, CatchUp) and height in self.commits:  # the sender is behind
                self.sim.send(self.index, src, self.commits[height])
        elif height > self.app.height or self.core is None:
            self.future.setdefault(height, {})[message_key(message)] = (src, message)
        elif isinstance(message, CatchUp):
            self._catch_up(message)
        elif not self.knows(message):
            self.seen[message.encode()] = message
            for dst in self._peers():
                if dst != src and not self.sim.nodes[dst].knows(message):
                    self.sim.send(self.index, dst, message)
            self.process(self.core.receive(message))

    def _catch_up(self, catch_up: CatchUp) -> None:
        try:
            verify_commit(catch_up.certificate, self.sim.committee, CHAIN_ID, catch_up.height,
                          catch_up.block.hash)
        except InvalidCommit:
            return
        if self.app.check_block(catch_up.block):
            self._decided(catch_up.block, catch_up.certificate)

    def on_timeout(self, generation: int, timeout: Timeout) -> None:
        if generation == self.generation and self.core is not None:
            self.process(self.core.on_timeout(timeout))

    def _peers(self) -> list[int]:
        return [i for i in range(len(self.sim.nodes)) if i != self.index]

    def knows(self, message: Proposal | Vote) -> bool:
        """Whether this node holds the message; gossip asks it of peers (the sim is omniscient
        where real gossip learns it from what peers announce) to skip needless re-sends."""
        key = message.encode()
        return key in self.seen or key in self.own

    def gossip(self) -> None:
        """Re-send this height's messages, own and relayed, to peers still lacking them."""
        nodes = self.sim.nodes
        for message, targets in self.sent:
            for dst in targets:
                if not nodes[dst].knows(message):
                    self.sim.send(self.index, dst, message)
        peers = self._peers()
        for message in self.seen.values():
            for dst in peers:
                if not nodes[dst].knows(message):
                    self.sim.send(self.index, dst, message)

    def process(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self._broadcast(action.message)
            elif isinstance(action, ScheduleTimeout):
                self.sim.schedule_timeout(self, action.timeout, action.delay_ms)
            elif isinstance(action, RecordSigned):
                self.last_signed = action.step
            elif isinstance(action, RecordLock):
                self.lock = action.lock
            elif isinstance(action, Evidence):
                self.evidence.append(action)
            elif isinstance(action, Decide):
                self._decided(action.block, action.certificate)
                return  # the rest belonged to the finished height

    def _decided(self, block: Block, certificate: CommitCertificate) -> None:
        self.sim.safety.record(self.index, block.header.height, block.hash)
        self.app.append(block)
        self.commits[block.header.height] = CatchUp(block, certificate)
        self.sent, self.own, self.seen = [], set(), {}
        self.core = None
        self.generation += 1
        self.sim.schedule_next_height(self)

    def _broadcast(self, message: Message) -> None:
        peers = self._peers()
        twin = self._conflicting(message)
        if twin is None:
            sends = [(message, tuple(peers))]
        else:
            # half the peers see one message, the other half the other, and one peer both
            rng = self.sim.rng
            rng.shuffle(peers)
            half = len(peers) // 2
            witness = peers[:1]
            sends = [(message, tuple(peers[:half])), (twin, tuple(peers[half:] + witness))]
        self.sent += sends
        self.own.update(msg.encode() for msg, _ in sends)
        for msg, targets in sends:
            for dst in targets:
                self.sim.send(self.index, dst, msg)

    def _conflicting(self, message: Message) -> Message | None:
        """The second message a faulty node signs alongside an honest one, if it cheats here."""
        if self.spec.fault == Fault.EQUIVOCATING_PROPOSER and isinstance(message, Proposal):
            other = dataclasses.replace(message.block.header, state_root=crypto.sha256(b"evil"))
            block = dataclasses.replace(message.block, header=other)
            return sign_proposal(self.key, CHAIN_ID, message.height, message.round, message.pol_round,
                                 block)
        if self.spec.fault == Fault.DOUBLE_VOTER and isinstance(message, Vote):
            body = message.body
            other_hash = crypto.sha256(body.block_hash) if body.block_hash == NIL_HASH else NIL_HASH
            return sign_vote(self.key, CHAIN_ID, VoteBody(body.kind, body.height, body.round, other_hash))
        return None


class Simulation:
    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.keys = [SigningKey(crypto.sha256(b"sim key %d" % i)) for i in range(len(scenario.powers))]
        self.validators = tuple((k.public_key, p) for k, p in zip(self.keys, scenario.powers))
        self.committee = Committee(tuple(CommitteeMember(k, p) for k, p in self.validators))
        self.safety = SafetyChecker()
        self.now = 0
        self._queue: list[tuple[int, int, object]] = []
        self._seq = 0
        self.messages_sent = 0
        self._link_faults = dict(scenario.link_faults)
        self._type_faults = dict(scenario.type_faults)
        self.nodes = [SimNode(i, spec, self.keys[spec.validator], self)
                      for i, spec in enumerate(scenario.nodes)]

    def _push(self, at: int, event: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, event))

    def send(self, src: int, dst: int, message: Message) -> None:
        self.messages_sent += 1
        if self.now >= self.scenario.gst_ms:
            self._push(self.now + self._delay(self.scenario.stable_delay_ms), (dst, src, message))
            return
        if any(p.separates(self.now, src, dst) for p in self.scenario.partitions):
            return
        link = (self._link_faults.get((src, dst)) or self._type_faults.get(message_type(message))
                or self.scenario.faults)
        random = self.rng.random
        if random() < link.drop:
            return
        for _ in range(2 if random() < link.duplicate else 1):
            self._push(self.now + self._delay(link.delay_ms), (dst, src, message))

    def _delay(self, delay_ms: tuple[int, int]) -> int:
        low, high = delay_ms
        return low + int(self.rng.random() * (high - low + 1))

    def schedule_next_height(self, node: SimNode) -> None:
        self._push(self.now + self.scenario.commit_wait_ms, ("next height", node.index, node.generation))

    def schedule_timeout(self, node: SimNode, timeout: Timeout, delay_ms: int) -> None:
        self._push(self.now + delay_ms, ("timeout", node.index, node.generation, timeout))

    def _gossip_round(self) -> None:
        for node in self.nodes:
            node.gossip()
        self._push(self.now + self.scenario.gossip_ms, ("gossip",))

    def start(self) -> None:
        for node in self.nodes:
            node.begin_height()
            if node.spec.restart_at_ms is not None:
                self._push(node.spec.restart_at_ms, ("restart", node.index))
        self._push(self.scenario.gossip_ms, ("gossip",))

    def run(self, until_ms: int, done: Callable[[], bool] = lambda: False) -> None:
        """Advance the virtual clock up to until_ms, or until done() holds after an event."""
        while self._queue and self._queue[0][0] <= until_ms:
            self.now, _, event = heapq.heappop(self._queue)
            if event[0] == "timeout":
                _, index, generation, timeout = event
                self.nodes[index].on_timeout(generation, timeout)
            elif event[0] == "gossip":
                self._gossip_round()
            elif event[0] == "next height":
                node = self.nodes[event[1]]
                if event[2] == node.generation:
                    node.begin_height()
            elif event[0] == "restart":
                self.nodes[event[1]].restart()
            else:
                dst, src, message = event
                self.nodes[dst].receive(src, message)
            if done():
                return
        self.now = max(self.now, until_ms)

    def honest_heights(self) -> list[int]:
        return [n.app.height for n in self.nodes if n.honest]


@contextlib.contextmanager
def cached_signature_checks() -> Iterator[None]:
    """Remember signature checks while simulating: every node checks the same messages, and the
    answer for given bytes never changes, so this only saves time (about 80 us a check)."""
    original = crypto.verify
    crypto.verify = functools.lru_cache(maxsize=1 << 16)(original)
    try:
        yield
    finally:
        crypto.verify = original
