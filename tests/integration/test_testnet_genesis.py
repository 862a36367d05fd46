"""genesis/testnet.json, the genesis sized for GPU miners, starts a devnet: real
processes finalize blocks on it and serve its 19M-parameter genesis model, whose blob
(153 MB) is past the 64 MiB every smaller chain's blobs fit in."""
import hashlib
import json
import urllib.request

import pytest

from node.types.genesis import load_genesis
from node.uPoW.model import ParameterLayout
from tests.integration.test_devnet import ROOT, _get, _height, _wait, running_devnet

pytestmark = pytest.mark.integration

TESTNET = ROOT / "genesis" / "testnet.json"


def test_a_devnet_starts_from_the_testnet_genesis(tmp_path):
    genesis = load_genesis(TESTNET)
    assert 10e6 <= ParameterLayout(genesis.model).size <= 30e6
    with running_devnet(tmp_path / "devnet", "--validators", "2", "--no-mine", "--genesis", str(TESTNET)) as devnet:
        url = json.loads((devnet / "devnet.json").read_text())["nodes"][0]["url"]
        _wait(lambda: _height(url) >= 3, 120, "height 3 on the testnet genesis")
        status = _get(url, "/status")
        assert status["chain_id"] == "uponode-testnet"
        root = status["model"]["root"]
        with urllib.request.urlopen(f"{url}/blobs/{root}", timeout=60) as reply:
            blob = reply.read()
        assert len(blob) > 64 << 20 and hashlib.sha256(blob).hexdigest() == root
