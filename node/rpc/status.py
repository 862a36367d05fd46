"""The reply to GET /status (DESIGN.md §6): the chain's head, round and model, read from
the chain, what only the running node knows (peers, sync, consensus round), and this
node's own mining and auditing."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from node.rpc.rounds_view import float32
from node.state.chain import Chain
from node.uPoW.rounds import RoundSchedule


@dataclasses.dataclass
class WorkProgress:
    """What this node's mining and auditing did in the round it last worked on, and the
    last reward the chain paid it (kept up to date by node.work.round_work)."""
    round: int = 0
    units_trained: int = 0
    audit_tasks: int = 0  # the units assigned to this node to audit (their challenged segments)
    audits_done: int = 0
    last_reward: tuple[int, int] | None = None  # (round, amount)

    def at_round(self, round_: int) -> None:
        """Start counting afresh once the work is for a later round."""
        if round_ > self.round:
            self.round, self.units_trained, self.audit_tasks, self.audits_done = round_, 0, 0, 0


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    """What the running node alone knows, as of the moment it is asked."""
    syncing: bool  # a peer's head is more than a block ahead of ours
    peers: Sequence[tuple[str, str]]  # (public key hex, advertised address) of each peer
    consensus_round: int | None  # at the height being decided; None between heights
    me: bytes | None = None  # this node's account
    mining: bool = False  # started to mine (not --no-mine)
    work: WorkProgress | None = None


def status_json(chain: Chain, node: NodeStatus) -> dict:
    height = chain.height
    schedule = RoundSchedule.from_genesis(chain.genesis)
    model = chain.state.model()
    reply = {"chain_id": chain.genesis.chain_id, "height": height,
             "head_hash": chain.head.block_hash.hex(),
             "syncing": node.syncing,
             "peers": [{"key": key, "address": address} for key, address in node.peers],
             "consensus_round": node.consensus_round,
             # the round and phase of the block being decided next
             "round": schedule.round_of(height + 1), "phase": schedule.phase(height + 1),
             "model": {"round": model.round, "root": model.root.hex(),
                       "eval_loss": float32(model.eval_loss_bits)},
             "committee": [{"key": m.pub_key.hex(), "power": m.power} for m in chain.state.committee().members]}
    if node.me is not None and node.work is not None:
        reply.update(_own_work(chain, schedule, node.me, node.mining, node.work))
    return reply


def _own_work(chain: Chain, schedule: RoundSchedule, me: bytes, mining: bool, work: WorkProgress) -> dict:
    state = chain.state
    round_ = schedule.round_of(chain.height + 1)
    miner = state.miner(me)
    committed = sum(m == me for m, _, _ in state.round_commitments(round_))
    reward = None if work.last_reward is None else {"round": work.last_reward[0], "amount": work.last_reward[1]}
    current = work.round == round_
    return {
        "account": me.hex(),
        "mining": {"enabled": mining, "registered": miner is not None,
                   "units": 0 if miner is None else miner.units,
                   "bond": state.account(me).bond, "min_bond": chain.genesis.economics.min_miner_bond,
                   "round": round_, "units_trained": work.units_trained if current else 0,
                   "units_committed": committed, "last_reward": reward},
        "auditing": {"round": work.round, "tasks": work.audit_tasks, "done": work.audits_done},
    }
