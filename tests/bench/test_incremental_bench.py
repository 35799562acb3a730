"""bench.incremental: agreement, cost and multiply-adds of the incremental audio encoder, in one JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import incremental

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default"


@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").is_file(), reason="needs the shipped model")
def test_the_bench_measures_both_precisions_on_real_audio(tmp_path):
    out = tmp_path / "inc.json"
    flac = ROOT / "tests" / "data" / "chopin-mazurka06-2-20s.flac"
    args = ["--audio", str(flac), "--max-seconds", "8", "--batches", "2", "--hops", "6", "--rounds", "1"]
    assert incremental.main([*args, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["cpu"] and res["multiply_adds"]["incremental_steady"] < 0.8 * res["multiply_adds"]["whole"]
    for precision in ("fp32", "int8"):
        row = res["precisions"][precision]
        assert row["agreement"]["windows"] >= 10 and row["agreement"]["cos_min"] >= 0.97
        assert set(row["ms_per_window"]["2"]) == {"whole", "incremental"}
    assert res["precisions"]["fp32"]["agreement"]["max_abs_diff"] <= 1e-5
