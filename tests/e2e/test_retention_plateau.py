"""A mining devnet run past three retention windows, with real processes: what every
node keeps on disk and in its state stops growing once rounds leave the window, while
the model keeps learning and every round pays exactly what the genesis split says.

The bounds, checked at every round's close on every node and the light auditor:
- blobs by kind: at most a delta and a leaves file per miner for each kept round and the
  round being trained (miners x (W + 1)), and the models of those rounds and the next
  (W + 2);
- state entries, and blob bytes: after the window has filled (the close of round 2W), no
  more than PLATEAU_SLACK times the most reached in the first window (closes W..2W);
  without retention the entries would grow by a round's records each round.
- blocks: every validator keeps W + 2 rounds of blocks at most (those from the seed of
  the oldest round the state keeps, or a lower kept snapshot; no committee changes here,
  so no landmarks), the older ones are 404, and its LevelDB on disk after the window has
  filled stays under PLATEAU_SLACK times its first-window peak (a node compacts what it
  pruned: LevelDB alone would keep the deleted blocks in its log and tables for hours)."""
import asyncio
import collections
import functools
import pathlib
import re

import aiohttp
import pytest

from node.uPoW.model_state import MODEL_MAGIC
from node.uPoW.state import STATE_DOMAIN
from node.uPoW.work import DELTA_MAGIC, LEAVES_MAGIC
from tests.e2e.api import NodeApi
from tests.e2e.devnet import Devnet
from tests.e2e.manifest import DevnetSpec
from tests.e2e.run import _wait_ready
from tests.integration.test_mining_devnet import _expected_payments

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 2
LAST_ROUND = 3 * WINDOW + 1
SPEC = DevnetSpec(validators=4, auditors=1, mine=True, block_interval_ms=500, round_blocks=12,
                  commit_blocks=6, retention_rounds=WINDOW)
# blob bytes vary with the units in flight; LevelDB with the writes since its last compaction
PLATEAU_SLACK = {"entries": 1.25, "blobs": 1.5, "leveldb": 2.0}
ROUND_TIMEOUT_S = 120
MAGICS = {"delta": DELTA_MAGIC, "leaves": LEAVES_MAGIC, "model": MODEL_MAGIC, "checkpoint": STATE_DOMAIN}


def _bytes_under(path: pathlib.Path, skip: str) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and skip not in f.parts)


def _blob_kinds(blobs: pathlib.Path) -> collections.Counter:
    """How many blobs of each kind a node holds, by their magic."""
    kinds: collections.Counter = collections.Counter()
    for f in blobs.glob("??/*"):
        with open(f, "rb") as blob:
            head = blob.read(32)
        kinds[next((name for name, magic in MAGICS.items() if head.startswith(magic)), "other")] += 1
    return kinds


async def _state_entries(api: NodeApi) -> int:
    async with api.session.get(api.url + "/metrics") as reply:
        return int(re.search(r"^uponode_state_entries (\d+)$", await reply.text(), re.M).group(1))


async def _min_height(apis: list[NodeApi]) -> int:
    statuses = await asyncio.gather(*(api.status() for api in apis))
    return min((s["height"] if s else -1) for s in statuses)


async def _run(directory: pathlib.Path) -> dict:
    devnet = await Devnet.create(SPEC, directory, senders=0)
    try:
        await devnet.compile_kernels()
        devnet.start()
        async with aiohttp.ClientSession() as session:
            apis = [NodeApi(session, node.url) for node in devnet.validators]
            await _wait_ready(devnet, apis)
            homes = [node.home for node in devnet.validators + devnet.auditors]
            samples: dict[str, list[tuple[int, int]]] = {"entries": [], "blobs": [], "leveldb": []}
            kept: list[tuple[int, int, list[int]]] = []  # (round, its close, each validator's first block)
            kinds: list[collections.Counter] = []
            losses, payments = [], []
            genesis = devnet.genesis
            for round_ in range(LAST_ROUND + 1):
                close = (round_ + 1) * SPEC.round_blocks
                deadline = asyncio.get_running_loop().time() + ROUND_TIMEOUT_S
                while await _min_height(apis) < close:
                    assert asyncio.get_running_loop().time() < deadline, f"round {round_} did not close"
                    await asyncio.sleep(0.5)
                view = await apis[0].round(round_)
                block = await apis[0].block(close)
                payments.append((round_, {(r["to"], r["reason"]): r["amount"] for r in view["rewards"]},
                                 _expected_payments(view, genesis.economics, block["header"]["proposer"])))
                losses.append(view["eval_loss"])
                kept.append((round_, close, await asyncio.gather(*(api.first_block() for api in apis))))
                samples["leveldb"].append((round_, max(_bytes_under(node.home / "data", "") for node in
                                                       devnet.validators)))
                entries = await asyncio.gather(*(_state_entries(api) for api in apis))
                samples["entries"].append((round_, max(entries)))
                samples["blobs"].append((round_, max(_bytes_under(h / "blobs", "quarantine") for h in homes)))
                kinds.append(functools.reduce(lambda a, b: a | b, (_blob_kinds(h / "blobs") for h in homes)))
            return {"samples": samples, "kinds": kinds, "losses": losses, "payments": payments, "kept": kept}
    finally:
        await devnet.close()


def test_disk_and_state_plateau_past_three_windows_while_the_model_learns_and_pays_exactly(tmp_path):
    result = asyncio.run(_run(tmp_path / "devnet"))
    for round_, paid, expected in result["payments"]:
        assert paid == expected, f"round {round_}"
    losses = result["losses"]
    assert None not in losses and losses[-1] < losses[0], losses
    miners = SPEC.validators
    for round_, kinds in enumerate(result["kinds"]):
        assert kinds["delta"] <= miners * (WINDOW + 1) and kinds["leaves"] <= miners * (WINDOW + 1), (round_, kinds)
        assert kinds["model"] <= WINDOW + 2, (round_, kinds)
    for round_, close, firsts in result["kept"]:
        # pruned at the close: blocks below the seed of round + 1 - W go, but those of the
        # oldest of the three snapshots kept then (the closes of round - 3 .. round - 1, or
        # one round older where a node skipped a snapshot while it synced)
        seed = max(1, (round_ + 1 - WINDOW) * SPEC.round_blocks)
        assert all(first <= seed for first in firsts), (round_, firsts)
        assert close - min(firsts) + 1 <= (WINDOW + 2) * SPEC.round_blocks + 1, (round_, firsts)
    series = result["samples"]["leveldb"]
    bound = PLATEAU_SLACK["leveldb"] * max(v for r, v in series if WINDOW <= r <= 2 * WINDOW)
    assert all(v <= bound for r, v in series if r > 2 * WINDOW), (bound, series)
    for name in ("entries", "blobs"):
        series = result["samples"][name]
        bound = PLATEAU_SLACK[name] * max(value for round_, value in series if WINDOW <= round_ <= 2 * WINDOW)
        late = [(round_, value) for round_, value in series if round_ > 2 * WINDOW]
        assert late and all(value <= bound for _, value in late), (name, bound, series)
