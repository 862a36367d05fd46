"""`uponode status`: a running node's GET /status, one field per line or as JSON."""
from __future__ import annotations

import argparse
import json

from node.cmd.arguments import rpc_url

HELP = "a running node's chain, head and round, and its own work"
DESCRIPTION = ("Ask a running node (GET /status) for its chain id, height, head, "
               "peers, round, phase and model, and what it mines and audits.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", type=rpc_url, default=None,
                        help="the node's HTTP API (default: http://127.0.0.1:26600)")
    parser.add_argument("--json", action="store_true", help="print the node's JSON as is")


def run(args: argparse.Namespace) -> int:
    from node.net.rpc_client import DEFAULT_RPC, STATUS_PATH, RpcClient, RpcError
    status = RpcClient(args.rpc or DEFAULT_RPC).get(STATUS_PATH)
    if not isinstance(status, dict):
        raise RpcError(f"{args.rpc or DEFAULT_RPC}/status: the reply is not a JSON object")
    if args.json:
        print(json.dumps(status))
        return 0
    for key, value in status.items():
        if key in _IN_WORDS and isinstance(value, dict):
            print(f"{key}: {_IN_WORDS[key](value)}")
        elif isinstance(value, dict):
            # the model's round, root and eval loss, one per line
            for sub_key, sub_value in value.items():
                print(f"{key}.{sub_key}: {_shown(sub_value)}")
        else:
            print(f"{key}: {_shown(value)}")
    return 0


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _mining(m: dict) -> str:
    if not m.get("enabled"):
        return "off (started with --no-mine)"
    if not m.get("registered"):
        return (f"not registered yet: bond {m.get('bond')} (a miner needs {m.get('min_bond')}; "
                f"`uponode tx bond` adds to it)")
    reward = m.get("last_reward")
    paid = ("no reward yet" if not isinstance(reward, dict)
            else f"last reward {reward.get('amount')} for round {reward.get('round')}")
    return (f"registered for {m.get('units')} unit(s) a round, bond {m.get('bond')}; round {m.get('round')}: "
            f"{m.get('units_trained')} unit(s) trained, {m.get('units_committed')} committed; {paid}")


def _auditing(a: dict) -> str:
    if not a.get("tasks"):
        return f"no units assigned to this node to audit in round {a.get('round')}"
    return f"round {a.get('round')}: {a.get('done')} of {a.get('tasks')} assigned unit(s) re-executed and reported"


_IN_WORDS = {"mining": _mining, "auditing": _auditing}
