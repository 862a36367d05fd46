"""The metrics registry as Prometheus reads it (its own text parser): labels escaped,
histograms cumulative with their sum and count, and misuse refused; the consensus
step timings the node observes."""
import math
import pathlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.consensus.step_timing import StepTiming
from node.rpc.metrics import MAX_SERIES, NODE_METRICS, Metrics
from node.rpc.scrape import bytes_under
from node.types.votes import NIL_HASH, PRECOMMIT, PREVOTE, VoteBody


def _families(metrics: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.render())}


def test_labelled_counters_come_back_with_their_labels_escaped():
    metrics = Metrics()
    metrics.inc("uponode_peer_bytes_sent_total", 100, {"type": "Vote"})
    metrics.inc("uponode_peer_bytes_sent_total", 20, {"type": "Vote"})
    metrics.inc("uponode_peer_bytes_sent_total", 7, {"type": 'odd "type"\\\n'})
    samples = _families(metrics)["uponode_peer_bytes_sent"].samples
    assert {s.labels["type"]: s.value for s in samples} == {"Vote": 120, 'odd "type"\\\n': 7}


def test_a_histogram_counts_into_cumulative_buckets_with_sum_and_count():
    metrics = Metrics()
    for seconds in (0.2, 0.7, 0.7, 400.0):
        metrics.observe("uponode_block_interval_seconds", seconds)
    samples = _families(metrics)["uponode_block_interval_seconds"].samples
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert buckets["0.25"] == 1 and buckets["0.5"] == 1 and buckets["1.0"] == 3 and buckets["300.0"] == 3
    assert buckets["+Inf"] == 4
    sums = {s.name: s.value for s in samples if not s.name.endswith("_bucket")}
    assert sums == {"uponode_block_interval_seconds_sum": 401.6, "uponode_block_interval_seconds_count": 4}


def test_misuse_is_refused():
    metrics = Metrics()
    with pytest.raises(ValueError, match="takes the labels"):
        metrics.inc("uponode_peer_bytes_sent_total", 1)
    with pytest.raises(ValueError, match="cannot go down"):
        metrics.inc("uponode_peer_bans_total", -1)
    with pytest.raises(TypeError, match="not a gauge"):
        metrics.set("uponode_peer_bans_total", 1)
    with pytest.raises(KeyError):
        metrics.set("uponode_no_such_metric", 1)
    for i in range(MAX_SERIES):
        metrics.inc("uponode_peer_bytes_received_total", 1, {"type": str(i)})
    with pytest.raises(ValueError, match="series already"):
        metrics.inc("uponode_peer_bytes_received_total", 1, {"type": "one more"})


def test_nan_and_the_untouched_series_render():
    metrics = Metrics()
    metrics.set("uponode_eval_loss", math.nan)
    families = _families(metrics)
    assert math.isnan(families["uponode_eval_loss"].samples[0].value)
    assert families["uponode_peer_bytes_sent"].samples == []  # no label values yet: no series


def _vote(kind: int, height: int) -> VoteBody:
    return VoteBody(kind, height, 0, NIL_HASH)


def test_step_timings_of_a_height_this_validator_voted_in():
    steps = StepTiming()
    assert steps.committed(4, 10.0) == []  # synced, not voted: no timings, but a start for 5
    steps.voted(_vote(PREVOTE, 5), 10.8)
    steps.voted(_vote(PREVOTE, 5), 10.9)  # the same vote to the next peer
    steps.voted(_vote(PRECOMMIT, 5), 11.3)
    timings = dict(steps.committed(5, 11.5))
    assert timings == pytest.approx({"propose": 0.8, "prevote": 0.5, "precommit": 0.2})
    assert steps.committed(6, 12.0) == []


def test_the_readme_lists_every_metric():
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    assert [name for _, name, *_ in NODE_METRICS if f"`{name}`" not in readme] == []


def test_bytes_under_sums_the_files_below(tmp_path):
    (tmp_path / "blobs" / "ab").mkdir(parents=True)
    (tmp_path / "blobs" / "ab" / "x").write_bytes(b"1" * 300)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "000001.ldb").write_bytes(b"2" * 40)
    (tmp_path / "node.log").write_bytes(b"3" * 5)
    assert bytes_under(tmp_path / "blobs") == 300 and bytes_under(tmp_path / "data") == 40
    assert bytes_under(tmp_path) == 345 and bytes_under(tmp_path / "absent") == 0
