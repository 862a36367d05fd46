"""kill -9 at random moments never loses an acknowledged block nor leaves the store
inconsistent: a writer process finalizes blocks in a loop and is SIGKILLed 50 times;
after each kill the store is reopened and checked through its public API."""
import random
import signal
import subprocess
import sys
import time

import pytest

from node.state.chain import Chain
from tests.state_checks import expected_total, state_digest, total_holdings
from node.storage.chainstore import ChainStore
from tests.integration.crash_writer import GENESIS
from tests.oracles import NoOracle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 50


def _run_and_kill(db, rng) -> list[tuple[int, str, str]]:
    writer = subprocess.Popen([sys.executable, "-m", "tests.integration.crash_writer", str(db)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = writer.stdout.readline()  # wait until it is writing, then kill at a random moment
        assert first, writer.stderr.read()
        time.sleep(rng.uniform(0, 0.25))
        writer.send_signal(signal.SIGKILL)
        rest = writer.stdout.read()
    finally:
        writer.kill()
        writer.wait()
    return [tuple(line.split()) for line in (first + rest).splitlines()]


def test_sigkill_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "db"
    rng = random.Random(20261123)
    acknowledged: dict[int, tuple[str, str]] = {}
    for _ in range(KILLS):
        for height, block_hash, state_root in _run_and_kill(db, rng):
            acknowledged[int(height)] = (block_hash, state_root)
        with ChainStore.open(db) as store:  # runs the store's consistency check
            chain = Chain(GENESIS, store, NoOracle(GENESIS))  # recomputes the state root from the entries
            head = store.head()
            assert head.height >= max(acknowledged)
            assert state_digest(store.state_items()) == head.state_root
            for height, (block_hash, state_root) in acknowledged.items():
                block = chain.block(height)
                assert block.hash.hex() == block_hash and block.header.state_root.hex() == state_root
                assert store.height_of(block.hash) == height
                for index, tx in enumerate(block.txs):
                    assert store.tx_location(tx.hash) == (height, index)
            supply = chain.state.supply()
            assert total_holdings(chain.state) == expected_total(supply)
    assert len(acknowledged) > KILLS
