"""The reply to GET /status (DESIGN.md §6): the chain's head, round and model, read from
the chain, and what only the running node knows (peers, sync, consensus round)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from node.rpc.rounds_view import float32
from node.state.chain import Chain
from node.uPoW.rounds import RoundSchedule


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    """What the running node alone knows, as of the moment it is asked."""
    syncing: bool  # a peer's head is more than a block ahead of ours
    peers: Sequence[tuple[str, str]]  # (public key hex, advertised address) of each peer
    consensus_round: int | None  # at the height being decided; None between heights


def status_json(chain: Chain, node: NodeStatus) -> dict:
    height = chain.height
    schedule = RoundSchedule.from_genesis(chain.genesis)
    model = chain.state.model()
    return {"chain_id": chain.genesis.chain_id, "height": height,
            "head_hash": chain.head.block_hash.hex(),
            "syncing": node.syncing,
            "peers": [{"key": key, "address": address} for key, address in node.peers],
            "consensus_round": node.consensus_round,
            # the round and phase of the block being decided next
            "round": schedule.round_of(height + 1), "phase": schedule.phase(height + 1),
            "model": {"round": model.round, "root": model.root.hex(),
                      "eval_loss": float32(model.eval_loss_bits)}}
