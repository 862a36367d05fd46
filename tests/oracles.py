"""Work oracles for tests whose blocks need no training work."""


class NoOracle:
    """For blocks without fraud proofs or round closes: nothing may ask for work."""

    def confirm_fraud(self, *args):
        raise AssertionError("the oracle was asked about a block that needs no work")

    aggregate = confirm_fraud
