"""A writer that finalizes blocks of signed transfers in a loop until it is killed.

    python -m tests.integration.crash_writer DB_PATH

After each finalized block it prints "height block_hash state_root" (hex): a line
on stdout is an acknowledgement that the block is durably stored.
"""
import dataclasses
import pathlib
import random
import sys
import time

from node.types import genesis as g
from node.types.blocks import certificate_from_precommits
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from node.state.chain import Chain
from node.types.crypto import SigningKey, sha256
from node.storage.chainstore import ChainStore
from node.types.transactions import Transfer, sign_tx
from tests.oracles import NoOracle

VALIDATORS = [SigningKey(sha256(b"crash validator %d" % i)) for i in range(4)]
USERS = [SigningKey(sha256(b"crash user %d" % i)) for i in range(8)]
_BASE = g.load_genesis()
GENESIS = dataclasses.replace(
    _BASE, chain_id="crash-test",
    validators=tuple(g.Validator(k.public_key, 10) for k in VALIDATORS),
    accounts=tuple(g.Account(k.public_key, 10**12, 0) for k in USERS))


def main(path: str) -> None:
    rng = random.Random()
    with ChainStore.open(pathlib.Path(path)) as store:
        chain = Chain(GENESIS, store, NoOracle(GENESIS))
        while True:
            txs = []
            for _ in range(rng.randint(0, 20)):
                sender, receiver = rng.sample(USERS, 2)
                nonce = chain.state.account(sender.public_key).nonce + sum(
                    1 for t in txs if t.body.sender == sender.public_key)
                txs.append(sign_tx(sender, GENESIS.chain_id, nonce,
                                   Transfer(receiver.public_key, rng.randint(1, 1000)), GENESIS.economics.min_tx_fee))
            block, _ = chain.propose(txs, VALIDATORS[0].public_key, int(time.time() * 1000))
            body = VoteBody(PRECOMMIT, block.header.height, 0, block.hash)
            commit = certificate_from_precommits([sign_vote(k, GENESIS.chain_id, body) for k in VALIDATORS])
            chain.finalize(block, commit)
            # one write per line: unbuffered, print() would write each field on its own and a
            # kill between two writes would leave half an acknowledgement
            print(f"{block.header.height} {block.hash.hex()} {block.header.state_root.hex()}",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
