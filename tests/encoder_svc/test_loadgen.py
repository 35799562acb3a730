"""The issue-7 load generator against the stack (RANDOMLY INITIALISED test model): 2 real-time
streams x 3 s, every hop answered, latencies measured, loopback-only and bounds enforced."""

from __future__ import annotations

import json

from bench import loadgen as lg


def test_random_model_two_realtime_streams_every_hop(make_stack, tmp_path):
    stack = make_stack()
    out = tmp_path / "streams.json"
    assert lg.main(["--address", stack.address, "--streams", "2", "--seconds", "3", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    row = res["steps"][0]
    assert row["errors"] == 0 and row["missed_hops"] == 0 and row["updates"] >= 2 * 6
    assert 0 < row["p50_ms"] <= row["p99_ms"] < 3000
    assert {"date", "machine", "max_streams_p99_100ms", "p99_ms_at_200"} <= set(res)
    assert lg.main(["--address", "10.0.0.1:50051"]) == 2
    assert lg.main(["--address", stack.address, "--streams", "5000"]) == 2


def test_streams_spread_over_load_processes_are_all_answered(make_stack, tmp_path):
    stack = make_stack()
    out = tmp_path / "streams.json"
    args = ["--address", stack.address, "--streams", "4", "--seconds", "3", "--procs", "2", "--out", str(out)]
    assert lg.main(args) == 0
    row = json.loads(out.read_text())["steps"][0]
    assert row["loadgen_processes"] == 2 and row["errors"] == 0 and row["missed_hops"] == 0
    assert row["updates"] >= 4 * 6 and 0 < row["p50_ms"] <= row["p99_ms"] < 3000
    assert lg.main(["--address", stack.address, "--streams", "900", "--procs", "2"]) == 2  # 400 per process
