"""Benchmark what a block costs as the state grows: block commit latency with 1,000
state entries and with 300,000, in one process on a real LevelDB store.

    python scripts/bench_state.py [--sizes 1000,300000] [--blocks 60] [--block-txs 15]

Timed is what a validator does with a finalized block it receives (decode, check
signatures, execute, state root, one synced write), as in bench_ledger.py, with
devnet-sized blocks (15 transfers, about what a round's work adds to a block).  The
baseline, measured in the same run on the same entries, is what the root cost before
the state tree: the Merkle root rebuilt over every entry's hash, in key order.
Prints one JSON object per size, then one with the ratio of the largest to the smallest.
"""
import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ledger import VALIDATORS, _commit, _percentile  # noqa: E402

from node.state.chain import Chain  # noqa: E402
from node.storage.blobstore import BlobStore  # noqa: E402
from node.storage.chainstore import ChainStore  # noqa: E402
from node.types import genesis as g  # noqa: E402
from node.types.blocks import Block, CommitCertificate  # noqa: E402
from node.types.crypto import SigningKey, sha256  # noqa: E402
from node.types.merkle import root_of_leaf_hashes  # noqa: E402
from node.types.state_proof import entry_hash  # noqa: E402
from node.types.transactions import Transfer, sign_tx  # noqa: E402
from node.uPoW.work_oracle import BlobWorkOracle  # noqa: E402

SENDERS = [SigningKey(sha256(b"bench sender %d" % i)) for i in range(64)]


def _genesis(entries: int) -> g.Genesis:
    """A genesis whose state has about `entries` entries: accounts that never move but
    weigh on a root rebuilt from scratch, and the senders of the timed transfers."""
    base = g.load_genesis()
    idle = [g.Account(sha256(b"idle %d" % i), 1, 0) for i in range(max(0, entries - len(SENDERS) - 3))]
    return dataclasses.replace(
        base, chain_id="bench-state",
        validators=tuple(g.Validator(k.public_key, 10) for k in VALIDATORS),
        accounts=tuple(g.Account(k.public_key, 10**12, 0) for k in SENDERS) + tuple(idle))


def _transfers(chain: Chain, chain_id: str, count: int, block: int, fee: int) -> list:
    """count transfers to fresh addresses (each adds a state entry), the senders taking
    turns, each with its next nonce."""
    nonces = {k.public_key: chain.state.account(k.public_key).nonce for k in SENDERS}
    txs = []
    for i in range(count):
        sender = SENDERS[(block * count + i) % len(SENDERS)]
        txs.append(sign_tx(sender, chain_id, nonces[sender.public_key], Transfer(sha256(b"to %d %d" % (block, i)), 1), fee))
        nonces[sender.public_key] += 1
    return txs


def _one_size(entries: int, blocks: int, block_txs: int, directory: Path) -> dict:
    genesis = _genesis(entries)
    fee = genesis.economics.min_tx_fee
    with ChainStore.open(directory / "proposer") as proposer_store, \
            ChainStore.open(directory / "validator") as validator_store:
        started = time.perf_counter()
        proposer = Chain(genesis, proposer_store, BlobWorkOracle(genesis, BlobStore(directory / "blobs")))
        validator = Chain(genesis, validator_store, BlobWorkOracle(genesis, BlobStore(directory / "blobs")))
        opened_s = (time.perf_counter() - started) / 2
        latencies, rebuilds = [], []
        for b in range(blocks):
            txs = _transfers(proposer, genesis.chain_id, block_txs, b, fee)
            block, refused = proposer.propose(txs, VALIDATORS[0].public_key, 1_000 * (b + 1))
            assert not refused, refused
            commit = _commit(genesis.chain_id, block)
            proposer.finalize(block, commit)
            raw, raw_commit = block.encode(), commit.encode()
            t0 = time.perf_counter()
            validator.finalize(Block.decode(raw), CommitCertificate.decode(raw_commit))
            latencies.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            state = validator.state.entries
            root_of_leaf_hashes([entry_hash(k, state[k]) for k in sorted(state)])
            rebuilds.append(time.perf_counter() - t0)
        assert validator.head.state_root == proposer.head.state_root
        return {"bench": "block_commit_vs_state_size", "state_entries": len(validator.state.entries),
                "block_txs": block_txs, "blocks": blocks, "open_s": round(opened_s, 2),
                "commit_p50_ms": round(statistics.median(latencies) * 1e3, 2),
                "commit_p99_ms": round(_percentile(latencies, 0.99) * 1e3, 2),
                "baseline_full_root_rebuild_p50_ms": round(statistics.median(rebuilds) * 1e3, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,300000", help="state sizes, comma-separated")
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--block-txs", type=int, default=15)
    args = parser.parse_args()
    try:
        sizes = [int(n) for n in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes takes integers separated by commas, got {args.sizes!r}")
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(_one_size(size, args.blocks, args.block_txs, Path(tmp)))
        print(json.dumps(results[-1]), flush=True)
    small, large = results[0], results[-1]
    print(json.dumps({"bench": "block_commit_growth", "from_entries": small["state_entries"],
                      "to_entries": large["state_entries"],
                      "commit_ratio": round(large["commit_p50_ms"] / small["commit_p50_ms"], 2),
                      "baseline_rebuild_ratio": round(large["baseline_full_root_rebuild_p50_ms"]
                                                      / small["baseline_full_root_rebuild_p50_ms"], 2)}))


if __name__ == "__main__":
    main()
