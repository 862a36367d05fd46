"""`uponode tx transfer|bond|unbond`: sign a transaction with the home's key, send it to
a node and, unless --no-wait, wait for the node to include it and print its result;
`uponode tx status HASH`: where a transaction stands."""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from node.cmd import passphrase
from node.cmd.arguments import account_address, amount, fee, rpc_url, tx_hash

HELP = "sign and send a transaction, or ask where one stands"
DESCRIPTION = None
WAIT_LIMIT_S = 120.0  # a few rounds of blocks: a transaction still pending then is told so
POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="tx_command", required=True, metavar="COMMAND")
    transfer = commands.add_parser(
        "transfer", help="send coins from the node's account",
        description="Sign a transfer with the home's key and chain id, with the next nonce "
                    "the node reports, send it to the node and print its hash; then wait "
                    "for a block to include it and print its result.")
    transfer.add_argument("--to", required=True, type=account_address,
                          help="recipient (64 hex digits)")
    transfer.add_argument("--amount", required=True, type=amount, help="coins to send")
    bond = commands.add_parser(
        "bond", help="move coins from the account's balance to its bond",
        description="Bond coins, as a miner or an auditor must before it registers (a miner's "
                    "node registers by itself once its bond reaches the genesis minimum); "
                    "print the transaction's hash and wait for its result.")
    bond.add_argument("--amount", required=True, type=amount, help="coins to bond")
    unbond = commands.add_parser(
        "unbond", help="move coins from the account's bond back to its balance",
        description="Unbond coins (refused while the account may still be slashed, as the "
                    "ledger's rules say); print the transaction's hash and wait for its result.")
    unbond.add_argument("--amount", required=True, type=amount, help="coins to unbond")
    for command, whose in ((transfer, "sender"), (bond, "account"), (unbond, "account")):
        command.add_argument("--home", required=True, help=f"the {whose}'s node home")
        passphrase.add_argument(command)
        command.add_argument("--fee", type=fee, default=None,
                             help="fee paid from the account on top of the amount "
                                  "(default: the genesis minimum, economics.min_tx_fee)")
        command.add_argument("--rpc", type=rpc_url, default=None,
                             help="the node's HTTP API (default: the home's listen address)")
        command.add_argument("--no-wait", action="store_true",
                             help="print the hash and return once the node has taken the "
                                  "transaction, without waiting for a block")
    status = commands.add_parser(
        "status", help="where a transaction stands",
        description="Ask a node (GET /txs/{hash}) whether a transaction is pending, included "
                    "(at which height, with which result) or unknown to it; exit 1 if it "
                    "failed or the node dropped it.")
    status.add_argument("hash", type=tx_hash, help="the transaction's hash (64 hex digits)")
    status.add_argument("--rpc", type=rpc_url, default=None,
                        help="the node's HTTP API (default: http://127.0.0.1:26600)")
    status.add_argument("--json", action="store_true", help="print the node's JSON as is")


def run(args: argparse.Namespace) -> int:
    from node.net.rpc_client import DEFAULT_RPC, RpcClient
    if args.tx_command == "status":
        client = RpcClient(args.rpc or DEFAULT_RPC)
        reply = _tx_status(client, args.hash)
        if args.json:
            print(json.dumps(reply))
            return 0 if _failure(reply) is None else 1
        return _report(reply)
    client, tx = _send(args)
    print(tx.hash.hex(), flush=True)
    if args.no_wait:
        return 0
    deadline = time.monotonic() + WAIT_LIMIT_S
    while (reply := _tx_status(client, tx.hash.hex()))["status"] == "pending":
        if time.monotonic() > deadline:
            print(f"still pending after {WAIT_LIMIT_S:.0f} s; `uponode tx status {tx.hash.hex()}` "
                  f"tells how it ends", file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    return _report(reply)


def _tx_status(client, hex_hash: str) -> dict:
    from node.net.rpc_client import RpcError
    reply = client.get(f"/txs/{hex_hash}")
    if not isinstance(reply, dict) or reply.get("status") not in ("pending", "included", "unknown"):
        raise RpcError(f"{client.base_url}/txs/{hex_hash}: the reply holds no transaction status")
    return reply


def _failure(reply: dict) -> str | None:
    """Why the transaction failed, or None if it is included with "ok" or still pending."""
    if reply["status"] == "included":
        return None if reply.get("result") == "ok" else f"included but failed: {reply.get('result')}"
    if reply["status"] == "unknown":
        reason = reply.get("result")
        return (f"dropped by the node: {reason}" if reason is not None
                else "unknown to the node: in none of the blocks it keeps, nor in its pool")
    return None


def _report(reply: dict) -> int:
    """Print where the transaction stands, in words; 1 if it failed."""
    failure = _failure(reply)
    if failure is not None:
        print(f"transaction {reply.get('hash')} {failure}", file=sys.stderr)
        return 1
    if reply["status"] == "pending":
        print("pending")
    else:
        print(f"included at height {reply.get('height')} (index {reply.get('index')}): {reply.get('result')}")
    return 0


def _send(args: argparse.Namespace):
    """Sign the transaction args ask for and have the node take it: (the client, the tx)."""
    from node.storage.home import load_home
    from node.net.rpc_client import STATUS_PATH, TXS_PATH, RpcClient, RpcError, account_path, http_url
    from node.types.transactions import Bond, Transfer, Unbond, sign_tx
    home = load_home(pathlib.Path(args.home), passphrase.source(args))
    client = RpcClient(args.rpc or http_url(home.config.listen))
    chain_id = home.genesis.chain_id
    status = client.get(STATUS_PATH)
    node_chain_id = status.get("chain_id") if isinstance(status, dict) else None
    if node_chain_id != chain_id:
        # a transaction signed for another chain would only come back as a bad signature
        raise RpcError(f"{client.base_url} is on chain {json.dumps(node_chain_id)}, "
                       f"not the home's {json.dumps(chain_id)}")
    me = home.key.public_key
    account = client.get(account_path(me))
    nonce = account.get("pending_nonce", account.get("nonce")) if isinstance(account, dict) else None
    if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 <= nonce < 1 << 64:
        raise RpcError(f"{client.base_url}/accounts/{me.hex()}: the reply holds no nonce")
    tx_fee = home.genesis.economics.min_tx_fee if args.fee is None else args.fee
    payload = {"transfer": lambda: Transfer(to=args.to, amount=args.amount),
               "bond": lambda: Bond(amount=args.amount),
               "unbond": lambda: Unbond(amount=args.amount)}[args.tx_command]()
    tx = sign_tx(home.key, chain_id, nonce, payload, tx_fee)
    reply = client.post_text(TXS_PATH, tx.encode().hex())
    if not isinstance(reply, dict) or reply.get("hash") != tx.hash.hex():
        raise RpcError(f"{client.base_url}/txs: the reply does not acknowledge the transaction")
    return client, tx
