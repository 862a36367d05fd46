"""Perturbation tests in the manner of CometBFT's test/e2e: a manifest names a devnet of
real `uponode` processes and the faults to inject (kill, pause, disconnect, partition,
restart, cut the proposer); the runner lays the devnet out behind one TCP proxy per
directed peer link, injects the faults, and checks invariants only through the nodes'
public HTTP API.

    python -m tests.e2e.run tests/e2e/manifests/partition.toml [--dir DIR] [--keep]
"""
