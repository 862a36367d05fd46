"""A unit's challenge as the chain draws it, for tests that play its auditors."""
from node.state.reader import StateReader
from node.types.genesis import TrainingConfig
from node.uPoW.assignment import UnitChallenge


def drawn_challenge(state: StateReader, round_: int, miner: bytes, unit: int,
                    training: TrainingConfig) -> UnitChallenge:
    """The unit's draws from round_'s recorded challenge; AssertionError if not drawn."""
    record = state.challenge(round_)
    challenge = record.unit_challenge(miner, unit, training) if record is not None else None
    assert challenge is not None, f"round {round_}'s challenge is not drawn"
    return challenge
