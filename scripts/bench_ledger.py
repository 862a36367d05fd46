"""Benchmark the chain core: signed transfers verified, applied and stored per second,
and block commit latency, in one process on a real LevelDB store.

    python scripts/bench_ledger.py [--txs 20000] [--block-txs 1000] [--accounts 1000]

What is timed is what a validator does with a finalized block it receives: decode
the block bytes, check every transaction's signature, execute them, verify the
commit certificate (4 validators), compute the state root and write everything
in one synced batch.  The baseline, measured in the same run, is bare ed25519
verification of the same transactions (pynacl), the floor of any such pipeline.
Prints one JSON object per line.
"""
import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from node.types import genesis as g
from node.types.blocks import Block, CommitCertificate, certificate_from_precommits
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from node.state.chain import Chain
from node.types.crypto import SigningKey, sha256, verify
from node.storage.chainstore import ChainStore
from node.types.transactions import TX_DOMAIN, Transfer, sign_tx
from node.storage.blobstore import BlobStore
from node.uPoW.work_oracle import BlobWorkOracle

VALIDATORS = [SigningKey(sha256(b"bench validator %d" % i)) for i in range(4)]


def _genesis(accounts: list[SigningKey]) -> g.Genesis:
    base = g.load_genesis()
    return dataclasses.replace(
        base, chain_id="bench",
        validators=tuple(g.Validator(k.public_key, 10) for k in VALIDATORS),
        accounts=tuple(g.Account(k.public_key, 10**12, 0) for k in accounts),
        consensus=dataclasses.replace(base.consensus, max_block_txs=100_000))


def _commit(chain_id: str, block: Block):
    body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
    return certificate_from_precommits([sign_vote(k, chain_id, body) for k in VALIDATORS])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _users(n_accounts: int) -> list[SigningKey]:
    return [SigningKey(sha256(b"bench user %d" % i)) for i in range(n_accounts)]


def _build_blocks(n_txs: int, block_txs: int, n_accounts: int,
                  directory: str) -> tuple[list[tuple[bytes, bytes]], float]:
    """In a separate process: sign the transfers, time bare ed25519 verification of them,
    and build the finalized blocks.  The timed validator then meets every transaction
    for the first time, with nothing this process verified remembered."""
    users = _users(n_accounts)
    genesis = _genesis(users)
    txs = [sign_tx(users[i % n_accounts], genesis.chain_id, i // n_accounts,
                   Transfer(users[(i + 1) % n_accounts].public_key, 1 + i % 97), genesis.economics.min_tx_fee)
           for i in range(n_txs)]
    started = time.perf_counter()
    for tx in txs:
        assert verify(tx.body.sender, tx.signature, TX_DOMAIN, genesis.chain_id, tx.body.encode())
    verify_rate = n_txs / (time.perf_counter() - started)
    blocks = []
    with ChainStore.open(Path(directory) / "proposer") as store:
        proposer = Chain(genesis, store, BlobWorkOracle(genesis, BlobStore(Path(directory) / "blobs")))
        for start in range(0, n_txs, block_txs):
            block, refused = proposer.propose(txs[start:start + block_txs],
                                              VALIDATORS[0].public_key, start)
            assert not refused
            commit = _commit(genesis.chain_id, block)
            proposer.finalize(block, commit)
            blocks.append((block.encode(), commit.encode()))
    return blocks, verify_rate


def run(n_txs: int, block_txs: int, n_accounts: int) -> list[dict]:
    genesis = _genesis(_users(n_accounts))
    with tempfile.TemporaryDirectory() as tmp:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            blocks, verify_rate = pool.submit(_build_blocks, n_txs, block_txs, n_accounts,
                                              tmp).result()
        # a validator finalizes them from bytes in its own store: the timed part
        latencies = []
        with ChainStore.open(Path(tmp) / "validator") as store:
            validator = Chain(genesis, store, BlobWorkOracle(genesis, BlobStore(Path(tmp) / "blobs")))
            started = time.perf_counter()
            for raw, raw_commit in blocks:
                t0 = time.perf_counter()
                validator.finalize(Block.decode(raw), CommitCertificate.decode(raw_commit))
                latencies.append(time.perf_counter() - t0)
            pipeline_rate = n_txs / (time.perf_counter() - started)
            empty_latencies = []
            for _ in range(50):
                block, _ = validator.propose([], VALIDATORS[0].public_key, 0)
                commit = _commit(genesis.chain_id, block)
                t0 = time.perf_counter()
                validator.finalize(block, commit)
                empty_latencies.append(time.perf_counter() - t0)
    return [
        {"bench": "transfers", "txs": n_txs, "block_txs": block_txs, "accounts": n_accounts,
         "verified_applied_stored_per_s": round(pipeline_rate), "baseline_ed25519_verify_per_s":
         round(verify_rate), "fraction_of_baseline": round(pipeline_rate / verify_rate, 3)},
        {"bench": "block_commit_latency", "block_txs": block_txs,
         "p50_ms": round(statistics.median(latencies) * 1e3, 2),
         "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 2)},
        {"bench": "block_commit_latency", "block_txs": 0,
         "p50_ms": round(statistics.median(empty_latencies) * 1e3, 2),
         "p99_ms": round(_percentile(empty_latencies, 0.99) * 1e3, 2)},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=20_000)
    parser.add_argument("--block-txs", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args()
    for record in run(args.txs, args.block_txs, args.accounts):
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
