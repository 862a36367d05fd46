"""Equivocation seen by the node's consensus core ends on chain as a slash."""
from genesis.builder import build_devnet
from node.types.blocks import certificate_from_precommits
from node.state.chain import Chain
from node.consensus.core import Evidence
from node.storage.home import init_home, load_home, read_key_file
from node.node import Node
from node.storage.chainstore import ChainStore
from node.types.votes import PRECOMMIT, VoteBody, sign_vote
from tests.oracles import NoOracle



def test_evidence_becomes_a_transaction_that_slashes_the_equivocator(tmp_path):
    genesis_path = build_devnet(4, tmp_path / "net")
    keys = [read_key_file(tmp_path / "net" / "keys" / f"validator-{i}.json") for i in range(4)]
    init_home(tmp_path / "home", genesis_path, key=keys[0])
    home = load_home(tmp_path / "home")
    node = Node(home, "127.0.0.1:1", ())
    chain_id = home.genesis.chain_id
    cheat = keys[1]
    first = sign_vote(cheat, chain_id, VoteBody(PRECOMMIT, 1, 0, b"\x01" * 32))
    second = sign_vote(cheat, chain_id, VoteBody(PRECOMMIT, 1, 0, b"\x02" * 32))
    with ChainStore.open(home.data_dir / "chain") as store:
        node.chain = Chain(home.genesis, store, NoOracle(home.genesis))
        bond_before = node.chain.state.account(cheat.public_key).bond
        balance_before = node.chain.state.account(keys[0].public_key).balance
        node._carry_out([Evidence(first, second)])
        assert len(node.mempool) == 1
        block, refused = node.chain.propose(node.mempool.reap(10), keys[0].public_key, 1)
        assert len(block.txs) == 1 and not refused
        body = VoteBody(PRECOMMIT, 1, 0, block.hash)
        node.chain.finalize(block, certificate_from_precommits([sign_vote(k, chain_id, body) for k in keys]))
        economics = home.genesis.economics
        taken = bond_before * economics.double_sign_slash_bps // 10_000
        assert node.chain.state.account(cheat.public_key).bond == bond_before - taken
        # and it decides no block after the one that punished it
        assert cheat.public_key not in {m.pub_key for m in node.chain.state.committee().members}
        # the reporter proposed its own transaction: of its fee only the burned share is gone
        assert node.chain.state.account(keys[0].public_key).balance == (
            balance_before + taken * economics.fraud_bounty_bps // 10_000
            - economics.min_tx_fee * economics.fee_burn_bps // 10_000)
