"""A seeded, deterministic discrete-event network of real consensus drivers over real chains.

In the manner of indy-plenum's sim_network: a virtual clock, a priority queue of deliveries
and timers, and faults chosen per message type and per link (tests/sim/links.py): drops
(that break the connection, as a lost frame does in the real p2p), delays (which also
reorder), duplicates, partitions that heal, links that come up late or are replaced, and
crashes.  After `gst_ms` (global stabilisation time) no message is dropped any more and
delays stay bounded, which is the condition under which Tendermint promises to decide.

Each node is what a real node runs, minus the sockets: node.consensus.driver's
ConsensusDriver over node.state.chain's Chain (its ChainStore in LevelDB) through
ConsensusChain, its SignGuard on disk, and the node's shell duties: a tick every second
(re-gossip, and a Status to every peer), block sync (GetBlocks / Blocks, each commit
checked by Chain.finalize), and the driver's peer_connected on every new connection.
A crash closes the node's store and loses what was only in memory; the restart reopens
both store and guard (an amnesiac node loses its guard as well).

Byzantine behaviour is a property of a node: twins (two nodes with one key, each honest on
its own), an equivocating proposer, a double voter, amnesia, a clock further ahead than
block times may be, a proposer backdating its blocks, and a flood of votes for
far-future rounds.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import heapq
import random
from typing import Callable, Iterator

from node.consensus import commits
from node.consensus.core import Evidence, TimeoutConfig
from node.consensus.driver import ConsensusDriver, Finalized, Send, SetTimer
from node.consensus.guard import SignGuard
from node.net.wire import Blocks, GetBlocks, Status
from node.state.block_sync import BlockSync, InvalidSyncedBlock
from node.state.chain import Chain
from node.state.consensus_chain import ConsensusChain
from node.state.mempool import Mempool
from node.storage.chainstore import ChainStore
from node.types import crypto
from node.types.blocks import Block
from node.types.crypto import SigningKey
from node.types.proposal import Proposal, sign_proposal
from node.types.votes import NIL_HASH, Vote, VoteBody, sign_vote
from tests.sim.chains import CHAIN_ID, ChainDirectory, GenesisOnlyOracle, sim_genesis, validator_key
from tests.sim.links import LinkFaults, Links, Partition, message_type, pair

GUARD_FILE = "sign_guard"
FLOOD_VOTES = 30  # far-future-round votes a round flooder sends with each of its votes


class Fault(enum.Enum):
    HONEST = "honest"
    TWIN = "twin"  # shares its key with another node; each of the two runs an honest driver
    EQUIVOCATING_PROPOSER = "equivocating proposer"  # a different block to each half of the peers
    DOUBLE_VOTER = "double voter"  # a second vote for another hash to half of the peers
    AMNESIA = "amnesia"  # restarts forgetting its last signed step and its lock
    FAST_CLOCK = "fast clock"  # its clock, and so its blocks' times, run past the allowed drift
    BACKDATING_PROPOSER = "backdating proposer"  # proposes blocks timed no later than their parent
    ROUND_FLOODER = "round flooder"  # with each vote, signed votes for far-future rounds


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    validator: int  # index of the key it signs with
    fault: Fault = Fault.HONEST
    crash_at_ms: int | None = None  # a crash, then a restart down_ms later
    down_ms: int = 0


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
    late_links: tuple[tuple[tuple[int, int], int], ...] = ()  # (a, b) first up at this time
    replaced_links: tuple[tuple[tuple[int, int], int], ...] = ()  # (a, b) replaced at this time
    stable_delay_ms: tuple[int, int] = (1, 20)  # after GST
    reconnect_ms: tuple[int, int] = (20, 1000)  # after a connection breaks
    tick_ms: int = 1000  # the node's status loop
    timeouts: TimeoutConfig = TimeoutConfig()


@dataclasses.dataclass
class SafetyChecker:
    """Every finalized block of every node; two different blocks at one height is a violation."""
    decided: dict[int, dict[bytes, list[int]]] = dataclasses.field(default_factory=dict)
    proposers: dict[int, bytes] = dataclasses.field(default_factory=dict)  # height -> a proposer

    def record(self, node: int, block: Block) -> None:
        self.decided.setdefault(block.header.height, {}).setdefault(block.hash, []).append(node)
        self.proposers[block.header.height] = block.header.proposer

    def violations(self) -> list[tuple[int, dict[bytes, list[int]]]]:
        return [(h, by_hash) for h, by_hash in sorted(self.decided.items()) if len(by_hash) > 1]


def peer_id(index: int) -> bytes:
    """A node's identity as a peer (twins share a key but not a connection)."""
    return index.to_bytes(2, "big")


class SimNode:
    def __init__(self, index: int, spec: NodeSpec, key: SigningKey, sim: "Simulation"):
        self.index = index
        self.spec = spec
        self.key = key
        self.sim = sim
        self.home = sim.directory.new_home(sim.scenario.powers)
        self.evidence: list[Evidence] = []
        self.generation = 0  # timers of an earlier life are stale
        self.alive = False
        self._cheats: dict[bytes, tuple[Proposal | Vote, set[int], set[int]]] = {}
        self.flood_sent = 0  # far-future-round votes a round flooder sent
        self.most_held = 0  # the most consensus messages its driver held at once
        self.boot()

    @property
    def honest(self) -> bool:
        return self.spec.fault == Fault.HONEST

    @property
    def height(self) -> int:
        return self.chain.height

    def boot(self) -> None:
        genesis = self.sim.genesis
        self.store = ChainStore.open(self.home / "chain")
        self.chain = Chain(genesis, self.store, GenesisOnlyOracle(genesis))
        # twins build different blocks: their clocks differ
        skew = 10 * genesis.consensus.max_clock_drift_ms + 1 if self.spec.fault == Fault.FAST_CLOCK else 0
        mempool = Mempool(1, genesis.consensus.max_tx_bytes, genesis.economics)
        view = ConsensusChain(self.chain, mempool,
                              self.key.public_key, lambda: self.sim.now + self.index + skew, _no_blob)
        self.sync = BlockSync(self.chain, functools.partial(self.sim.safety.record, self.index),
                              _no_blob)
        self.driver = ConsensusDriver(CHAIN_ID, self.key, view, SignGuard(self.home / GUARD_FILE),
                                      self.sim.scenario.timeouts, genesis.consensus.block_interval_ms)
        self.alive = True
        self.generation += 1
        self.carry_out(self.driver.start())

    def crash(self) -> None:
        self.alive = False
        self.generation += 1
        self.store.close()

    def restart(self) -> None:
        if self.spec.fault == Fault.AMNESIA:
            for path in self.home.glob(GUARD_FILE + "*"):
                path.unlink()
        self.boot()

    # ---- events ---------------------------------------------------------------------------

    def connected(self, other: int) -> None:
        self.carry_out(self.driver.peer_connected(peer_id(other)))
        self.sim.send(self.index, other, Status(self.chain.height, self.chain.head.block_hash))

    def tick(self) -> None:
        peers = self.sim.links.up_peers(self.index)
        self.carry_out(self.driver.tick([peer_id(p) for p in peers]))
        self.sync.retry()  # an unanswered request is asked again
        for peer in peers:
            self.sim.send(self.index, peer, Status(self.chain.height, self.chain.head.block_hash))

    def on_timer(self, timer) -> None:
        self.carry_out(self.driver.on_timer(timer))

    def receive(self, src: int, message) -> None:
        if isinstance(message, (Proposal, Vote)):
            self.carry_out(self.driver.receive(peer_id(src), message))
            self.most_held = max(self.most_held, self.driver.held_messages())
        elif isinstance(message, Status):
            request = self.sync.on_status(peer_id(src), message)
            if request is not None:
                self.sim.send(self.index, src, request)
        elif isinstance(message, GetBlocks):
            self.sim.send(self.index, src, self.sync.serve(message))
        elif isinstance(message, Blocks):
            try:
                step = self.sync.on_blocks(peer_id(src), message)
            except InvalidSyncedBlock:
                return  # another fork's block (only when safety is already broken)
            if step.advanced:
                self.carry_out(self.driver.synced())
            if step.next_request is not None:
                self.sim.send(self.index, src, step.next_request)

    # ---- the driver's actions ---------------------------------------------------------------

    def carry_out(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                dst = int.from_bytes(action.peer, "big")
                for message in self._as_sent(action.message, dst):
                    self.sim.send(self.index, dst, message)
            elif isinstance(action, SetTimer):
                self.sim.schedule_timer(self, action.timer, action.delay_ms)
            elif isinstance(action, Finalized):
                self.sim.safety.record(self.index, action.block)
            elif isinstance(action, Evidence):
                self.evidence.append(action)

    def _as_sent(self, message: Proposal | Vote, dst: int) -> list[Proposal | Vote]:
        """What this node sends dst for its message: a cheater sends half of its peers a
        conflicting one it signed too, and one peer both (the same halves every time)."""
        signer = message.proposer if isinstance(message, Proposal) else message.validator
        if signer != self.key.public_key:
            return [message]
        if self.spec.fault == Fault.ROUND_FLOODER and isinstance(message, Vote):
            return [message] + self._far_future_votes(message)
        if self.spec.fault == Fault.BACKDATING_PROPOSER and isinstance(message, Proposal):
            return [self._backdated(message)]
        key = message.encode()
        if key not in self._cheats:
            twin = self._conflicting(message)
            if twin is None:
                return [message]
            peers = [i for i in range(len(self.sim.nodes)) if i != self.index]
            self.sim.rng.shuffle(peers)
            half = len(peers) // 2
            self._cheats[key] = (twin, set(peers[:half]), set(peers[half:] + peers[:1]))
        twin, first, second = self._cheats[key]
        return [m for m, group in ((message, first), (twin, second)) if dst in group]

    def _backdated(self, proposal: Proposal) -> Proposal:
        """The proposal with its block timed at its parent's time (the genesis' for the first)."""
        parent = self.chain.block(proposal.height - 1) if proposal.height > 1 else None
        header = dataclasses.replace(proposal.block.header,
                                     time_ms=parent.header.time_ms if parent is not None else 0)
        return sign_proposal(self.key, CHAIN_ID, proposal.height, proposal.round, proposal.pol_round,
                             dataclasses.replace(proposal.block, header=header))

    def _far_future_votes(self, vote: Vote) -> list[Vote]:
        """Votes of this one's kind and height for rounds from 2 to 200 past its own."""
        body = vote.body
        rounds = [body.round + 2 + self.sim.rng.randrange(199) for _ in range(FLOOD_VOTES)]
        self.flood_sent += len(rounds)
        return [sign_vote(self.key, CHAIN_ID, VoteBody(body.kind, body.height, r, NIL_HASH)) for r in rounds]

    def _conflicting(self, message: Proposal | Vote) -> Proposal | Vote | None:
        """The second message a faulty node signs alongside an honest one, if it cheats here."""
        if self.spec.fault == Fault.EQUIVOCATING_PROPOSER and isinstance(message, Proposal):
            # another valid block: the same contents at another time
            header = dataclasses.replace(message.block.header,
                                         time_ms=message.block.header.time_ms + 1)
            block = dataclasses.replace(message.block, header=header)
            return sign_proposal(self.key, CHAIN_ID, message.height, message.round,
                                 message.pol_round, block)
        if self.spec.fault == Fault.DOUBLE_VOTER and isinstance(message, Vote):
            body = message.body
            other = crypto.sha256(body.block_hash) if body.block_hash == NIL_HASH else NIL_HASH
            return sign_vote(self.key, CHAIN_ID, VoteBody(body.kind, body.height, body.round, other))
        return None


def _no_blob(digest: bytes) -> None:
    raise AssertionError(f"a simulated block needs blob {digest.hex()[:16]}")


class Simulation:
    def __init__(self, scenario: Scenario, directory: ChainDirectory):
        self.scenario = scenario
        self.directory = directory
        self.rng = random.Random(scenario.seed)
        self.genesis = sim_genesis(scenario.powers)
        self.safety = SafetyChecker()
        self.now = 0
        self.messages_sent = 0
        self._queue: list[tuple[int, int, tuple]] = []
        self._seq = 0
        self._link_faults = dict(scenario.link_faults)
        self._type_faults = dict(scenario.type_faults)
        self.links = Links(len(scenario.nodes), {pair(*p): t for p, t in scenario.late_links})
        self.nodes: list[SimNode] = []
        for i, spec in enumerate(scenario.nodes):
            self.nodes.append(SimNode(i, spec, validator_key(spec.validator), self))
        self._schedule_start()

    def _push(self, at: int, event: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, event))

    def _schedule_start(self) -> None:
        s = self.scenario
        for (a, b), link in self.links.links.items():
            self._push(link.not_before_ms, ("connect", a, b))
        for i, node in enumerate(self.nodes):
            self._push(self.rng.randint(1, s.tick_ms), ("tick", i))
            if node.spec.crash_at_ms is not None:
                self._push(node.spec.crash_at_ms, ("crash", i))
                self._push(node.spec.crash_at_ms + node.spec.down_ms, ("restart", i))
        for k, partition in enumerate(s.partitions):
            self._push(partition.start_ms, ("partition", k))
            self._push(partition.heal_ms, ("heal", k))
        for (a, b), at in s.replaced_links:
            self._push(at, ("replace", a, b))

    # ---- links ------------------------------------------------------------------------------

    def send(self, src: int, dst: int, message) -> None:
        link = self.links.get(src, dst)
        if not link.up:
            return  # as on a real connection that is down: lost
        self.messages_sent += 1
        s = self.scenario
        if self.now >= s.gst_ms:
            self._push(self.now + self._delay(s.stable_delay_ms), ("deliver", dst, src, link.epoch, message))
            return
        faults = (self._link_faults.get((src, dst)) or self._type_faults.get(message_type(message))
                  or s.faults)
        if self.rng.random() < faults.drop:
            self._break(src, dst)
            return
        for _ in range(2 if self.rng.random() < faults.duplicate else 1):
            self._push(self.now + self._delay(faults.delay_ms), ("deliver", dst, src, link.epoch, message))

    def _break(self, a: int, b: int) -> None:
        self.links.take_down(a, b)
        self._push(self.now + self._delay(self.scenario.reconnect_ms), ("connect", a, b))

    def _connect(self, a: int, b: int, replace: bool = False) -> None:
        link = self.links.get(a, b)
        if ((link.up and not replace) or self.now < link.not_before_ms
                or not (self.nodes[a].alive and self.nodes[b].alive)
                or any(p.separates(self.now, a, b) for p in self.scenario.partitions)):
            return  # a restart or a heal tries again
        self.links.bring_up(a, b)
        self.nodes[a].connected(b)
        self.nodes[b].connected(a)

    def _delay(self, delay_ms: tuple[int, int]) -> int:
        low, high = delay_ms
        return low + int(self.rng.random() * (high - low + 1))

    def schedule_timer(self, node: SimNode, timer, delay_ms: int) -> None:
        self._push(self.now + delay_ms, ("timer", node.index, node.generation, timer))

    # ---- running ----------------------------------------------------------------------------

    def run(self, until_ms: int, done: Callable[[], bool] = lambda: False) -> None:
        """Advance the virtual clock up to until_ms, or until done() holds after an event."""
        while self._queue and self._queue[0][0] <= until_ms:
            self.now, _, event = heapq.heappop(self._queue)
            self._handle(event)
            if done():
                return
        self.now = max(self.now, until_ms)

    def _handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "deliver":
            _, dst, src, epoch, message = event
            link = self.links.get(src, dst)
            if link.up and link.epoch == epoch:
                self.nodes[dst].receive(src, message)
        elif kind == "timer":
            _, index, generation, timer = event
            node = self.nodes[index]
            if node.alive and node.generation == generation:
                node.on_timer(timer)
        elif kind == "tick":
            node = self.nodes[event[1]]
            if node.alive:
                node.tick()
            self._push(self.now + self.scenario.tick_ms, event)
        elif kind == "connect":
            self._connect(event[1], event[2])
        elif kind == "replace":
            self._connect(event[1], event[2], replace=True)
        elif kind == "crash":
            index = event[1]
            self.nodes[index].crash()
            for a, b in self.links.of(index):
                self.links.take_down(a, b)
        elif kind == "restart":
            index = event[1]
            self.nodes[index].restart()
            for a, b in self.links.of(index):
                self._push(self.now + self._delay((1, 300)), ("connect", a, b))
        elif kind == "partition":
            partition = self.scenario.partitions[event[1]]
            for a, b in list(self.links.links):
                if partition.separates(self.now, a, b):
                    self.links.take_down(a, b)
        elif kind == "heal":
            for (a, b), link in self.links.links.items():
                if not link.up:
                    self._push(self.now + self._delay((1, 300)), ("connect", a, b))

    def honest_heights(self) -> list[int]:
        return [n.height for n in self.nodes if n.honest]

    def close(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.crash()
            self.directory.remove(node.home)


@contextlib.contextmanager
def cached_signature_checks() -> Iterator[None]:
    """Remember signature checks while simulating: every node checks the same messages, and the
    answer for given bytes never changes, so this only saves time (about 80 us a check)."""
    original = crypto.verify
    cached = functools.lru_cache(maxsize=1 << 16)(original)
    crypto.verify = commits.verify = cached
    try:
        yield
    finally:
        crypto.verify = commits.verify = original
