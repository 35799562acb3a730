"""bench.follow_replay: a follower replayed on a dumped excerpt is scored against its truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import follow_replay as R


def dumped(tmp_path, speed_px_s=60.0, offset_px=0.0):
    """An excerpt of 40 s over a piece of 400 windows 10 px apart, 4 measures of 100 px per system
    (1 000 px), played at ``speed_px_s`` from x 0; each hop's similarities peak at the window of the
    music the audio window is centred on (``offset_px`` away from it)."""
    stride, hop, lag = 10.0, 0.5, 2.1
    sx = np.arange(400) * stride + 5.0
    t = np.arange(1, 81) * hop  # heard s (the audio window ends there)
    centre = (t - lag).clip(0) * speed_px_s + offset_px
    sims = np.exp(-0.5 * ((sx[None, :] - centre[:, None]) / 30.0) ** 2).astype(np.float32)
    grid_t = np.arange(0.0, 60.0, 0.05)
    grid_x = grid_t * speed_px_s
    xs = np.arange(sx[0], sx[-1] + 2.0, 2.0)
    np.savez(
        tmp_path / "a.npz",
        composer="bach",
        work="w",
        performer="p",
        start_s=0.0,
        hop_s=hop,
        stride=stride,
        lag_s=lag,
        strip_x=sx,
        t=t,
        sims=sims,
        null=np.full(len(t), np.nan),
        grid_t=grid_t,
        grid_w=grid_x / 100.0,
        grid_strip=grid_x,
        grid_page=np.zeros(len(grid_t)),
        grid_sys=(grid_x // 1000.0),
        table_x=xs,
        table_w=xs / 100.0,
        table_page=np.zeros(len(xs), np.int32),
        table_sys=(xs // 1000.0).astype(np.int32),
        engine_heard=t,
        engine_right=np.ones(len(t), bool),
        engine_err=np.zeros(len(t)),
    )
    return tmp_path


def test_a_follower_in_step_is_scored_within_a_second(tmp_path):
    (d,) = R.load_tracks(dumped(tmp_path))
    m = R.score([(d, R.replay(d, "guard"))], lo=10.0)  # after the lock-on
    assert m["within_1s"] > 0.9
    assert m["right_system"] > 0.9
    assert m["spurious_back_per_min"] == 0.0


def test_a_follower_a_measure_off_is_scored_off(tmp_path):
    """Similarities that put the music 120 px (2 s at 60 px/s) ahead of the truth."""
    (d,) = R.load_tracks(dumped(tmp_path, offset_px=120.0))
    m = R.score([(d, R.replay(d, "guard"))], lo=10.0)
    assert m["within_1s"] < 0.1
    assert m["within_5s"] > 0.9
    assert m["lag_s"] == pytest.approx(2.0, abs=0.3)


def test_main_writes_a_row_per_kind(tmp_path, capsys):
    dumped(tmp_path)
    out = tmp_path / "r.json"
    assert R.main([str(tmp_path), "--kinds", "tempo,guard", "--by-composer", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| tempo |" in text and "| guard |" in text and "| bach |" in text
    doc = json.loads(out.read_text())
    assert set(doc["kinds"]) == {"tempo", "guard"}


def test_unknown_kind_is_refused(tmp_path):
    dumped(tmp_path)
    with pytest.raises(SystemExit):
        R.main([str(tmp_path), "--kinds", "nope"])


def test_decompose_parts_the_matching_from_the_extrapolation(tmp_path):
    """At a steady tempo the step from the matched music to now is right; similarities that put the
    music 120 px (2 s) ahead leave it right but the matching 2 s off."""
    for sub, offset in (("a", 0.0), ("b", 120.0)):
        (tmp_path / sub).mkdir()
        (d,) = R.load_tracks(dumped(tmp_path / sub, offset_px=offset))
        parts = R.decompose([d], "guard")
        assert parts["extrapolation"]["within_1s"] > 0.95
        if offset:
            assert parts["matched"]["within_1s"] < 0.2 and parts["window"]["within_1s"] < 0.2
            assert parts["matched"]["within_5s"] > 0.8
        else:
            assert parts["matched"]["within_1s"] > 0.8
