"""A transaction of the node's own that no block will take must not hold back the
ones it signed after it (its audit reports, say): the node fills the gap."""
from genesis.builder import build_devnet
from node.node import Node
from node.state.chain import Chain
from node.storage.chainstore import ChainStore
from node.storage.home import init_home, load_home, read_key_file
from node.types.blocks import certificate_from_precommits
from node.types.transactions import Transfer
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from tests.oracles import NoOracle


class _NoRoundWork:
    def on_block(self) -> None:
        pass


def test_a_dropped_transaction_of_ours_is_filled_and_the_later_ones_go_through(tmp_path):
    genesis_path = build_devnet(4, tmp_path / "net")
    keys = [read_key_file(tmp_path / "net" / "keys" / f"validator-{i}.json") for i in range(4)]
    init_home(tmp_path / "home", genesis_path, key=keys[0])
    home = load_home(tmp_path / "home")
    node = Node(home, "127.0.0.1:1", (), mine=False)
    me, chain_id = keys[0].public_key, home.genesis.chain_id
    with ChainStore.open(home.data_dir / "chain") as store:
        node.chain = Chain(home.genesis, store, NoOracle(home.genesis))
        node.work = _NoRoundWork()  # not the subject: what the node does with its round's work
        for amount in (1, 2, 3):
            node._sign_and_queue(Transfer(to=keys[1].public_key, amount=amount))
        lost, *later = node.mempool.reap(10)
        assert [tx.body.nonce for tx in (lost, *later)] == [0, 1, 2]
        node.mempool.discard(lost.hash, "nonce_skipped")  # as a proposer does with one its block refused
        assert node.mempool.reap(10) == []
        block, _ = node.chain.propose([], me, 1)
        body = VoteBody(PRECOMMIT, 1, 0, block.hash)
        node.chain.finalize(block, certificate_from_precommits([sign_vote(k, chain_id, body) for k in keys]))
        node._after_finalize(block)
        filler, *rest = node.mempool.reap(10)
        assert rest == later
        assert filler.body.nonce == 0 and filler.body.payload == Transfer(to=me, amount=1)
