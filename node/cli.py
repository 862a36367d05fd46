"""The `uponode` command line (DESIGN.md §6).

Bad arguments, genesis files and environments end in one line on stderr naming
the problem and exit code 2, never a traceback.  Heavy modules (numba, torch) are
imported only after the arguments are checked, so that --threads can size
numba's thread pool before it starts.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Sequence

from node.types.errors import CommandError

EXIT_BAD_INPUT = 2


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more, got 0")
    return value


def _address(text: str) -> bytes:
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"an address is 64 hex digits, got {text!r}")
    return bytes.fromhex(text)


def _amount(text: str) -> int:
    value = _positive_int(text)
    if value >= 1 << 64:
        raise argparse.ArgumentTypeError(f"must be below 2^64, got {value}")
    return value


def _rpc_url(text: str) -> str:
    from node.net.rpc_client import check_url
    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage dump), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="uponode", description="A node of a chain where mining is training.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train the genesis model in one process, exactly as a miner does",
        description="Train the genesis model with the deterministic kernels, no chain.")
    train.add_argument("--genesis", help="genesis file (default: the devnet genesis)")
    train.add_argument("--steps", type=_non_negative_int,
                       help="training steps (default: the genesis's steps_per_unit)")
    train.add_argument("--threads", type=_positive_int, help="CPU threads (default: all cores)")
    train.add_argument("--gpu", action="store_true", help="train on the CUDA backend")
    train.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    train.add_argument("--export", metavar="FILE",
                       help="write the trained weights to FILE as safetensors")

    init = commands.add_parser(
        "init", help="create a node home: key, config and genesis",
        description="Create a node home with a new key, a default config.toml and a copy "
                    "of the genesis file and its corpus.  Never replaces an existing key.")
    init.add_argument("--home", required=True, help="the node's home directory")
    init.add_argument("--genesis", help="genesis file (default: the devnet genesis)")

    start = commands.add_parser(
        "start", help="run a full node", description="Run a full node until SIGINT or SIGTERM.")
    start.add_argument("--home", required=True, help="the node's home directory")
    start.add_argument("--gpu", action="store_true", help="mine on the CUDA backend")
    start.add_argument("--no-mine", action="store_true", help="follow the chain without mining")
    start.add_argument("--peer", action="append", metavar="HOST:PORT",
                       help="a peer to connect to (repeatable; replaces the config's peers)")
    start.add_argument("--listen", metavar="HOST:PORT",
                       help="address of the HTTP and peer server (default: the config's)")

    audit = commands.add_parser(
        "audit", help="run a light-audit node",
        description="Follow the chain through full nodes' HTTP APIs, re-execute the training "
                    "segments this key is assigned to audit, and report the results.")
    audit.add_argument("--home", required=True, help="the auditor's home directory")
    audit.add_argument("--peer", action="append", metavar="HOST:PORT",
                       help="a full node's HTTP address (repeatable; replaces the config's peers)")

    keys = commands.add_parser("keys", help="the node's key")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    show = keys_commands.add_parser(
        "show", help="print the node's public key (its account address)",
        description="Print the node's public key, which is also its account address.  "
                    "The private key is never printed.")
    show.add_argument("--home", required=True, help="the node's home directory")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")

    bench = commands.add_parser("bench", help="benchmarks against torch in the same process")
    bench.add_argument("target", choices=["kernels"], help="what to benchmark")
    bench.add_argument("--genesis", help="genesis file whose model shapes to use")
    bench.add_argument("--threads", type=_positive_int, action="append",
                       help="thread count to measure at (repeatable; default: 1 and all cores)")
    bench.add_argument("--gpu", action="store_true",
                       help="benchmark the CUDA kernels against torch on the GPU (cuBLAS FP32, TF32 off)")
    bench.add_argument("--json", action="store_true", help="one JSON object per line on stdout")

    status = commands.add_parser(
        "status", help="a running node's chain, head and round",
        description="Ask a running node (GET /status) for its chain id, height, head, "
                    "peers, round, phase and model.")
    status.add_argument("--rpc", type=_rpc_url, default=None,
                        help="the node's HTTP API (default: http://127.0.0.1:26600)")
    status.add_argument("--json", action="store_true", help="print the node's JSON as is")

    tx = commands.add_parser("tx", help="sign and send a transaction")
    tx_commands = tx.add_subparsers(dest="tx_command", required=True, metavar="COMMAND")
    transfer = tx_commands.add_parser(
        "transfer", help="send coins from the node's account",
        description="Sign a transfer with the home's key and chain id, with the next nonce "
                    "the node reports, send it to the node and print its hash.")
    transfer.add_argument("--home", required=True, help="the sender's node home")
    transfer.add_argument("--to", required=True, type=_address, help="recipient (64 hex digits)")
    transfer.add_argument("--amount", required=True, type=_amount, help="coins to send")
    transfer.add_argument("--rpc", type=_rpc_url, default=None,
                          help="the node's HTTP API (default: the home's listen address)")
    return parser


def _set_threads(threads: int | None) -> None:
    # numba sizes its pool from this variable when it is first imported
    if threads is not None and threads > int(os.environ.get("NUMBA_NUM_THREADS", "0") or 0):
        os.environ["NUMBA_NUM_THREADS"] = str(max(threads, os.cpu_count() or 1))


def _run_init(args: argparse.Namespace) -> int:
    from node.storage.home import init_home
    genesis_path = pathlib.Path(args.genesis) if args.genesis else None
    home = init_home(pathlib.Path(args.home), genesis_path)
    print(f"home: {home.path.resolve()}")
    print(f"public_key: {home.key.public_key.hex()}")
    print(f"chain_id: {home.genesis.chain_id}")
    print(f"genesis_hash: {home.genesis.hash}")
    return 0


def _run_keys_show(args: argparse.Namespace) -> int:
    from node.storage.home import load_node_key
    public_key = load_node_key(pathlib.Path(args.home)).public_key.hex()
    if args.json:
        # an account's address is its ed25519 public key
        print(json.dumps({"type": "ed25519", "public_key": public_key, "address": public_key}))
    else:
        print(public_key)
    return 0


def _run_status(args: argparse.Namespace) -> int:
    from node.net.rpc_client import DEFAULT_RPC, RpcClient, RpcError
    status = RpcClient(args.rpc or DEFAULT_RPC).get("/status")
    if not isinstance(status, dict):
        raise RpcError(f"{args.rpc or DEFAULT_RPC}/status: the reply is not a JSON object")
    if args.json:
        print(json.dumps(status))
        return 0
    for key, value in status.items():
        if isinstance(value, dict):
            # the model's round, root and eval loss, one per line
            for sub_key, sub_value in value.items():
                print(f"{key}.{sub_key}: {_shown(sub_value)}")
        else:
            print(f"{key}: {_shown(value)}")
    return 0


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _home_rpc_url(listen: str) -> str:
    """The URL a local client reaches a node at, from the node's listen address."""
    from node.storage.config import parse_host_port
    host, port = parse_host_port(listen)
    # a node listening on every interface is reachable on loopback
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _run_tx_transfer(args: argparse.Namespace) -> int:
    from node.storage.home import load_home
    from node.net.rpc_client import RpcClient, RpcError
    from node.types.transactions import Transfer, sign_tx
    home = load_home(pathlib.Path(args.home))
    client = RpcClient(args.rpc or _home_rpc_url(home.config.listen))
    chain_id = home.genesis.chain_id
    status = client.get("/status")
    node_chain_id = status.get("chain_id") if isinstance(status, dict) else None
    if node_chain_id != chain_id:
        # a transaction signed for another chain would only come back as a bad signature
        raise RpcError(f"{client.base_url} is on chain {json.dumps(node_chain_id)}, "
                       f"not the home's {json.dumps(chain_id)}")
    me = home.key.public_key
    account = client.get(f"/accounts/{me.hex()}")
    nonce = account.get("pending_nonce", account.get("nonce")) if isinstance(account, dict) else None
    if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 <= nonce < 1 << 64:
        raise RpcError(f"{client.base_url}/accounts/{me.hex()}: the reply holds no nonce")
    tx = sign_tx(home.key, chain_id, nonce, Transfer(to=args.to, amount=args.amount))
    reply = client.post_text("/txs", tx.encode().hex())
    if not isinstance(reply, dict) or reply.get("hash") != tx.hash.hex():
        raise RpcError(f"{client.base_url}/txs: the reply does not acknowledge the transaction")
    print(tx.hash.hex())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    from node.types.genesis import GenesisError

    try:
        if args.command == "train":
            _set_threads(args.threads)
            from node.cmd.train import run_train
            return run_train(args)
        if args.command == "bench":
            _set_threads(max(args.threads or [0]) or None)
            from node.uPoW.kernel_bench import run_bench
            return run_bench(args)
        if args.command == "init":
            return _run_init(args)
        if args.command == "start":
            from node.cmd.start import run_start
            from node.node import Node  # aiohttp and the consensus stack load only for this command
            return run_start(args, Node)
        if args.command == "audit":
            from node.cmd.audit import run_audit
            return run_audit(args)
        if args.command == "keys":
            return _run_keys_show(args)
        if args.command == "status":
            return _run_status(args)
        if args.command == "tx":
            return _run_tx_transfer(args)
    except (CommandError, GenesisError) as exc:
        print(f"uponode {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"uponode {args.command}: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
