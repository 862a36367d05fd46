"""Work oracles for tests whose blocks need no training work."""
from node.types.genesis import Genesis
from node.uPoW.model_state import genesis_model_root


class NoOracle:
    """For blocks without fraud proofs or round closes: nothing may ask for work; a
    chain started from genesis gets the genesis model's root."""

    def __init__(self, genesis: Genesis):
        self.genesis = genesis

    def genesis_model_root(self) -> bytes:
        return genesis_model_root(self.genesis)

    def confirm_fraud(self, *args):
        raise AssertionError("the oracle was asked about a block that needs no work")

    aggregate = confirm_fraud
