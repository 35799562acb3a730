"""bench/engine_sweep.py replays the session engine on recorded windows: the replay must give what
streaming the same frames through :class:`scoreid.identify.stream.Identifier` gives — every hop's
top-1, the final rank and the time to identify — with the defaults and with other settings; and the
grid is the cartesian product of what it names, the defaults' row first."""

from __future__ import annotations

import numpy as np
import pytest

from bench import engine_sweep as S
from bench.libwriter import unit_rows, write_core_library
from scoreid import contract as C
from scoreid.identify.engine import TOP_K, EngineSettings
from scoreid.identify.stream import Identifier, time_to_identify
from scoreid.library.store import Library
from scoreid.search.exact import ExactIndex


class ProjectingEncoder:
    """A deterministic stand-in for the audio encoder: the window's mean spectrum projected to 32-d."""

    def __init__(self, seed: int = 0):
        self.w = np.random.default_rng(seed).normal(size=(C.N_BINS, 32)).astype(np.float32)

    def embed_audio(self, x: np.ndarray) -> np.ndarray:
        e = np.asarray(x, np.float32)[:, 0].mean(axis=2) @ self.w
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Library:
    rng = np.random.default_rng(1)
    rows = {f"p{i}": unit_rows(rng, int(n)) for i, n in enumerate(rng.integers(40, 160, size=12))}
    return Library.open(write_core_library(tmp_path_factory.mktemp("sweep") / "lib", rows))


def frames_of(seed: int, seconds: float) -> np.ndarray:
    """Spectrogram frames whose windows move through a few 'notes', with a silent stretch."""
    rng = np.random.default_rng(seed)
    n = int(seconds * C.FPS)
    f = np.zeros((n, C.N_BINS), np.float32)
    for a in range(0, n, 15):
        f[a : a + 15, rng.integers(0, C.N_BINS, size=6)] = rng.uniform(0.3, 1.0, size=6)
    f[n // 3 : n // 3 + 120] = 0.0  # six seconds of silence: silent windows
    return f


@pytest.mark.parametrize(
    "setting", [{}, {"half_life": 8.0, "k": 10, "vote_temperature": 0.05, "candidates": 4}]
)
def test_replay_gives_what_streaming_gives(lib, setting):
    enc, k = ProjectingEncoder(), int(setting.get("k", TOP_K))
    engine = {n: v for n, v in setting.items() if n != "k"}
    index = ExactIndex(lib.vectors)
    for seed, truth in [(0, "p3"), (1, "p7"), (2, "p0")]:
        spec = frames_of(seed, 30.0)
        ident = Identifier(lib, enc, hop_s=0.5, k=k, **engine)
        ts, right, top = [], [], []
        for s in range(0, len(spec), 10):
            for u in ident.push_frames(spec[s : s + 10]):
                ts.append(u.t)
                right.append(bool(u.ranking) and u.ranking[0][0] == truth)
                top.append(u.ranking[0][0] if u.ranking else None)
        final = ident.snapshot(len(spec) / C.FPS).ranking
        rank = next((i + 1 for i, (p, _s, _v) in enumerate(final) if p == truth), None)

        wins = S.windows_of_frames(spec, 0.5, lib.contract.audio_window_frames)
        rec = S.record(lib, index, enc, f"s{seed}", truth, 30.0, wins, len(spec) / C.FPS, 50, batch=7)
        assert rec.silent.any() and not rec.silent.all()
        got_rank, got_tti, got_right = S.replay(lib, rec, EngineSettings(hop_s=0.5, **engine), k)
        assert got_right == right and got_rank == rank
        assert got_tti == time_to_identify(ts, right)
        assert len(set(top)) > 1  # the stream's top-1 changes: the comparison sees the ranking move


def test_recordings_are_cached_and_read_back_the_same(lib, tmp_path):
    enc, index = ProjectingEncoder(), ExactIndex(lib.vectors)
    wins = S.windows_of_frames(frames_of(3, 12.0), 0.5, lib.contract.audio_window_frames)
    made = [S.record(lib, index, enc, "a", "p1", 12.0, wins, 12.0, 25)]
    first = S.cached(tmp_path / "r.npz", lambda: made)
    again = S.cached(tmp_path / "r.npz", lambda: pytest.fail("recorded twice"))
    for a, b in zip(first, again):
        assert (a.key, a.truth, a.length_s, a.t_end) == (b.key, b.truth, b.length_s, b.t_end)
        for f in ("t", "silent", "emb", "hit_rows", "hit_sims"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_the_grid_is_the_product_with_the_defaults_first():
    g = S.parse_grid(["half_life=10,20", "k=10,25,50", "evidence=piece,library"])
    assert g[0] == {} and len(g) == 1 + 2 * 3 * 2
    assert {"half_life": 20.0, "k": 50, "evidence": "piece"} in g
    with pytest.raises(SystemExit, match="NAME"):
        S.parse_grid(["hop_s=0.25"])
    with pytest.raises(SystemExit, match="NAME"):
        S.parse_grid(["nonsense=1"])
    with pytest.raises(SystemExit, match="k must be"):
        S.parse_grid([f"k={S.RECORD_K + 1}"])
