"""scripts/bench_soak.py's pure parts: the least-squares slope, the per-round record
and the summary built from raw samples, the log and disk readers, and its flags."""
import datetime
import os

import pytest

from scripts.bench_soak import (DEFAULT_SKIP_ROUNDS, LogTail, NodeSample, RoundSample,
                                default_skip_rounds, landed_latencies, parse_args, parse_finalized,
                                round_record, sample_node, slope, summarize)

R = 4  # blocks per round in these samples


def _stamp(seconds: float) -> str:
    """A log line's asctime for local epoch seconds (logging's default format)."""
    moment = datetime.datetime.fromtimestamp(seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S,") + f"{moment.microsecond // 1000:03d}"


def _node(blobs: int = 100, data: int = 50, rss_kb: int = 2048, tree_kb: int = 3072,
          finalized: dict | None = None, entries: int | None = None) -> NodeSample:
    return NodeSample(home_bytes=blobs + data + 7, blobs_bytes=blobs, data_bytes=data,
                      rss_kb=rss_kb, tree_rss_kb=tree_kb, state_entries=entries, finalized=finalized or {})


def _sample(round_: int, start_ms: int = 0, interval_ms: int = 1000, nodes: dict | None = None,
            latencies: list | None = None) -> RoundSample:
    first = max(1, round_ * R)
    times = [start_ms + (h - first) * interval_ms for h in range(first, (round_ + 1) * R + 1)]
    view = {"eval_loss": 3.5, "units": [{"status": "accepted"}, {"status": "accepted"},
                                        {"status": "rejected"}]}
    return RoundSample(round_, (round_ + 1) * R, times, view, 12.34, nodes or {"node-0": _node()},
                       latencies or [], refused=1)


def test_slope_is_the_least_squares_fit():
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    # noise around y = 0.5 x: the fit, not the end points
    assert slope([0, 1, 2, 3], [0, 1, 0.5, 1.5]) == pytest.approx(0.4)
    assert slope([5, 6], [10, 7]) == pytest.approx(-3.0)


def test_slope_needs_two_distinct_xs():
    assert slope([], []) is None
    assert slope([1], [5]) is None
    assert slope([2, 2, 2], [1, 2, 3]) is None


def test_a_round_record_from_its_raw_samples():
    finalized = {7: 1000.0, 8: 1001.25}
    sample = _sample(1, start_ms=10_000, interval_ms=500,
                     nodes={"node-0": _node(finalized=finalized, entries=61), "auditor-0": _node(tree_kb=2048)},
                     latencies=[0.5, 0.25, 1.0, 0.75])
    sample.header_times_ms[-1] += 1500  # a slow close: 2 s after its predecessor, not 0.5
    record = round_record(sample, R)
    assert record["round"] == 1 and record["close_height"] == 8
    assert record["close_unix_s"] == 13.5 and record["elapsed_s"] == 12.3
    assert record["round_s"] == 3.5  # from the previous close (height 4) to this one
    assert record["eval_loss"] == 3.5 and record["units"] == 3 and record["accepted_units"] == 2
    assert record["block_interval_mean_s"] == 0.875  # (3 x 0.5 + 2) / 4
    assert record["block_interval_p95_s"] == 2.0
    assert record["close_interval_s"] == 2.0
    assert record["finality_p50_s"] == 0.625 and record["finality_p95_s"] == 1.0
    assert record["transfers_landed"] == 4 and record["transfers_refused"] == 1
    assert record["nodes"]["node-0"] == {
        "home_bytes": 157, "blobs_bytes": 100, "data_bytes": 50, "rss_mb": 3.0,
        "node_rss_mb": 2.0, "children_rss_mb": 1.0, "state_entries": 61, "close_s": 1.25}
    # no child process, and no 'finalized height' lines (the light auditor)
    assert record["nodes"]["auditor-0"]["children_rss_mb"] == 0.0
    assert record["nodes"]["auditor-0"]["close_s"] is None


def test_round_zero_has_no_previous_close_and_no_load_gives_no_finality():
    record = round_record(_sample(0), R)
    assert record["round_s"] is None  # the genesis has no header
    assert record["block_interval_mean_s"] == 1.0 and record["close_interval_s"] == 1.0
    assert record["finality_p50_s"] is None and record["finality_p95_s"] is None
    assert record["transfers_landed"] == 0


def test_the_summary_fits_slopes_after_the_warm_up_rounds():
    samples = []
    for r in range(6):
        # disk and memory grow linearly after round 1; rounds 0-1 are a warm-up spike
        growth = r if r >= 2 else 100
        samples.append(_sample(r, start_ms=r * R * 1000, latencies=[0.1 * (r + 1)],
                               nodes={"node-0": _node(blobs=1000 + 10 * growth, data=500 + 3 * growth,
                                                      tree_kb=1024 * (200 + growth), entries=50 + 2 * growth),
                                      # the auditor keeps no state; a round it did not answer has none
                                      "auditor-0": _node(entries=None),
                                      "node-1": _node(entries=None if r == 3 else 70)}))
    records = [round_record(s, R) for s in samples]
    summary = summarize(records, samples, skip_rounds=2)
    assert summary["summary"] is True and summary["rounds_recorded"] == 6
    assert summary["rounds_used"] == [2, 3, 4, 5] and summary["skip_rounds"] == 2
    slopes = summary["slopes"]["node-0"]
    assert slopes["blobs_bytes_per_round"] == 10.0 and slopes["data_bytes_per_round"] == 3.0
    assert slopes["rss_mb_per_round"] == 1.0 and slopes["state_entries_per_round"] == 2.0
    assert summary["slopes"]["auditor-0"]["state_entries_per_round"] is None
    assert summary["slopes"]["node-1"]["state_entries_per_round"] == 0.0
    # a round is 4 blocks of 1 s: 900 rounds an hour
    assert slopes["blobs_bytes_per_hour"] == pytest.approx(9000, rel=1e-6)
    assert slopes["rss_mb_per_hour"] == pytest.approx(900, rel=1e-6)
    assert summary["round_s_mean"] == 4.0 and summary["block_interval_mean_s"] == 1.0
    assert summary["finality_p50_s"] == 0.45 and summary["finality_p95_s"] == 0.6
    assert summary["transfers_landed"] == 4 and summary["transfers_refused"] == 4


def test_a_summary_of_too_few_rounds_has_no_slopes():
    samples = [_sample(0)]
    summary = summarize([round_record(samples[0], R)], samples, skip_rounds=0)
    assert summary["slopes"]["node-0"]["rss_mb_per_round"] is None
    assert summarize([], [], skip_rounds=4)["slopes"] == {}
    skipped = summarize([round_record(samples[0], R)], samples, skip_rounds=4)
    assert skipped["rounds_used"] == [] and skipped["block_interval_mean_s"] is None


def test_landed_latencies_counts_the_blocks_of_the_round_only():
    submitted = {"a": 10.0, "b": 11.0, "c": 12.0, "d": 13.0}
    # the probe stamps a block's transactions with the time it saw that block
    blocks = [(10.5, 4, 0), (11.75, 5, 0), (13.5, 9, 0)]
    included = {"a": 10.5, "b": 11.75, "c": 13.5, "work": 11.75}
    assert sorted(landed_latencies(submitted, included, blocks, range(5, 9))) == [0.75]
    assert sorted(landed_latencies(submitted, included, blocks, range(1, 10))) == [0.5, 0.75, 1.5]


def test_finalized_lines_are_read_with_their_times():
    log = (f"{_stamp(1000.5)} INFO node.node: finalized height 7 0a1b2c3d4e5f6071 with 2 txs\n"
           f"{_stamp(1001.0)} INFO node.node: dropped 1 transactions that waited 60 blocks\n"
           "Traceback (most recent call last): finalized height 9 without a time\n"
           f"{_stamp(1002.25)} INFO node.node: finalized height 8 ffeeddccbbaa9988 with 0 txs\n")
    assert parse_finalized(log.encode()) == {7: pytest.approx(1000.5), 8: pytest.approx(1002.25)}


def test_the_log_tail_reads_on_and_waits_for_a_line_to_end(tmp_path):
    path = tmp_path / "node.log"
    tail = LogTail(path)
    assert tail.read() == {}  # no log yet
    line = f"{_stamp(2000.0)} INFO node.node: finalized height 3 abc with 0 txs\n"
    path.write_text(line + line.replace("height 3", "height 4")[:30])
    assert list(tail.read()) == [3]
    with open(path, "a") as log:
        log.write(line.replace("height 3", "height 4")[30:])
    assert list(tail.read()) == [3, 4]
    assert tail.offset == path.stat().st_size



def test_a_node_sample_reads_its_home_its_memory_and_the_close_from_its_log(tmp_path):
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "b").write_bytes(b"1" * 10)
    (tmp_path / "data").mkdir()
    lines = [f"{_stamp(3000.0 + h)} INFO node.node: finalized height {h} abc with 0 txs\n"
             for h in range(1, 9)]
    (tmp_path / "node.log").write_text("".join(lines))
    # this test's own process stands in for a node
    sample = sample_node({"home": str(tmp_path), "pid": os.getpid(), "url": None}, LogTail(tmp_path / "node.log"), 8)
    assert sample.blobs_bytes == 10 and sample.data_bytes == 0
    assert sample.home_bytes == 10 + (tmp_path / "node.log").stat().st_size
    assert 0 < sample.rss_kb <= sample.tree_rss_kb and sample.state_entries is None
    assert sample.finalized == {7: pytest.approx(3007.0), 8: pytest.approx(3008.0)}


def test_the_warm_up_defaults_to_the_genesis_retention_window():
    assert default_skip_rounds({"consensus": {"round_blocks": 30}}) == DEFAULT_SKIP_ROUNDS
    assert default_skip_rounds({"consensus": {"retention_rounds": 12}}) == 12


def test_flags_have_defaults_and_bad_ones_get_one_line_errors(capsys):
    args = parse_args([])
    assert (args.minutes, args.tps, args.accounts, args.skip_rounds) == (60, 2, 16, None)
    assert parse_args(["--tps", "5"]).accounts == 40  # 8 per transfer a second
    assert parse_args(["--tps", "0"]).tps == 0
    for flags, message in ((["--minutes", "0"], "argument --minutes: must be > 0, got 0"),
                           (["--tps", "-1"], "argument --tps: must be >= 0, got -1"),
                           (["--minutes", "nan"], "argument --minutes: must be > 0, got nan"),
                           (["--skip-rounds", "x"], "argument --skip-rounds: expected a number")):
        with pytest.raises(SystemExit) as exited:
            parse_args(flags)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
