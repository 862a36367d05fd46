"""Executing a received block: its transactions, then its round close, on one overlay,
checking that the close it carries is the one recomputed here."""
from __future__ import annotations

from node.state.chain_state import ChainState
from node.state.round_close import close_round
from node.state.transition import BlockError, Transition, TxError
from node.state.tx_rules import FRAUD_PROOFS_PER_BLOCK, apply_tx, fraud_proof_count
from node.types.blocks import Block, RoundClose
from node.types.genesis import Genesis
from node.uPoW.oracle import WorkOracle

_CLOSE_PARTS = (("round", "round"), ("model_root", "model root"), ("eval_loss_bits", "eval loss"),
                ("payments", "payments"), ("units", "unit outcomes"), ("next_committee", "next committee"))


def execute_block(state: ChainState, genesis: Genesis, block: Block, oracle: WorkOracle) -> Transition:
    """Apply a block's transactions, then its round close, to an overlay.  BlockError if it
    carries more fraud proofs than a block may, a transaction fails or the close differs
    from the one recomputed here; WorkUnavailable (not an error of the block) if this node
    lacks a blob needed to decide."""
    h = block.header
    proofs = fraud_proof_count(block.txs)
    if proofs > FRAUD_PROOFS_PER_BLOCK:
        raise BlockError(f"{proofs} fraud proofs exceed the block's budget of {FRAUD_PROOFS_PER_BLOCK}")
    transition = Transition(state, genesis, h.height, h.prev_hash, block.last_commit, h.proposer, oracle)
    for index, tx in enumerate(block.txs):
        try:
            apply_tx(transition, tx)
        except TxError as exc:
            raise BlockError(f"transaction {index}: {exc}") from None
    _check_close(block.close, close_round(transition), h.height)
    return transition


def _check_close(carried: tuple[RoundClose, ...], expected: tuple[RoundClose, ...], height: int) -> None:
    if not expected:
        if carried:
            raise BlockError(f"round close: height {height} closes no round")
        return
    if not carried:
        raise BlockError(f"round close: missing at round {expected[0].round}'s closing height {height}")
    for field, label in _CLOSE_PARTS:
        got, want = getattr(carried[0], field), getattr(expected[0], field)
        if got != want:
            raise BlockError(f"round close: {label} {_difference(got, want)}")


def _difference(got: object, want: object) -> str:
    if isinstance(got, tuple):
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        if first is not None:
            return f"entry {first} differs from the recomputed one"
        return f"has {len(got)} entries, not the recomputed {len(want)}"
    if isinstance(got, bytes):
        return f"{got.hex()[:16]}… is not the recomputed {want.hex()[:16]}…"
    return f"{got} is not the recomputed {want}"
