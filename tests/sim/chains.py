"""Real chains for the simulated nodes: a small genesis per committee, and each node's
ChainStore (LevelDB) in its own directory under a temporary folder in /dev/shm.

Blocks carry no transactions and the simulated heights stay inside the first training
round, so no block needs training work: the oracle only knows the genesis model's root.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import shutil
import tempfile

from node.state.chain import Chain
from node.storage.chainstore import ChainStore
from node.types import crypto
from node.types import genesis as g
from node.types.crypto import SigningKey
from node.uPoW.model_state import genesis_model_root

CHAIN_ID = "sim-chain"
# far more heights than a run decides: no round close, hence no training work
ROUND_BLOCKS = 10_000


def validator_key(index: int) -> SigningKey:
    return SigningKey(crypto.sha256(b"sim key %d" % index))


@functools.cache
def _base() -> g.Genesis:
    return g.load_genesis()


@functools.cache
def sim_genesis(powers: tuple[int, ...]) -> g.Genesis:
    base = _base()
    consensus = dataclasses.replace(base.consensus, committee_size=max(len(powers), 1),
                                    round_blocks=ROUND_BLOCKS, commit_blocks=ROUND_BLOCKS - 3,
                                    block_interval_ms=1000)
    validators = tuple(g.Validator(validator_key(i).public_key, p) for i, p in enumerate(powers))
    return dataclasses.replace(base, chain_id=CHAIN_ID, validators=validators, accounts=(),
                               consensus=consensus,
                               hash=crypto.sha256(repr(powers).encode()).hex())


class GenesisOnlyOracle:
    """For chains whose blocks need no training work: only the genesis model's root."""

    def __init__(self, genesis: g.Genesis):
        self.genesis = genesis

    def genesis_model_root(self) -> bytes:
        return _model_root()  # asked only when a store is created

    def confirm_fraud(self, *args):
        raise AssertionError("a simulated block asked for training work")

    aggregate = confirm_fraud


@functools.cache
def _model_root() -> bytes:
    """Every simulated genesis has the devnet's model."""
    return genesis_model_root(_base())


class ChainDirectory:
    """A temporary folder of node chain stores, each a copy of one genesis store."""

    def __init__(self) -> None:
        shm = pathlib.Path("/dev/shm")
        self.path = pathlib.Path(tempfile.mkdtemp(prefix="uponode-sim-",
                                                  dir=shm if shm.is_dir() else None))
        self._templates: dict[tuple[int, ...], pathlib.Path] = {}
        self._count = 0

    def new_home(self, powers: tuple[int, ...]) -> pathlib.Path:
        """A fresh node directory whose chain store holds the genesis state."""
        self._count += 1
        home = self.path / f"node-{self._count}"
        shutil.copytree(self._template(powers), home / "chain")
        return home

    def _template(self, powers: tuple[int, ...]) -> pathlib.Path:
        if powers not in self._templates:
            genesis = sim_genesis(powers)
            path = self.path / f"genesis-{len(self._templates)}"
            with ChainStore.open(path) as store:
                Chain(genesis, store, GenesisOnlyOracle(genesis))
            self._templates[powers] = path
        return self._templates[powers]

    def remove(self, home: pathlib.Path) -> None:
        shutil.rmtree(home, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
