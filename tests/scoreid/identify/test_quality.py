"""End-to-end quality on the shipped model (``models/default``): a library of 10 pieces built from
engraved pages, performances under held-out conditions (csound soundfont, tempo 1.25x with a tempo
curve, room, noise) identified within 10 s of audio; and level robustness (-30/-15/0/+6 dB give
the same top-1). Skipped, with the reason, only while no model is shipped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from scoreid import contract as C
from scoreid.identify.stream import Identifier
from scoreid.library.build import add_folder, open_or_create
from scoreid.library.store import Library, write_index
from synthesis.demo_data import DEMO_PIECES, engrave_piece, notes_of, piece_id, shifted_performance

#: the shipped model; SCOREID_QUALITY_MODEL points the test at a candidate model instead
MODEL = Path(
    os.environ.get("SCOREID_QUALITY_MODEL") or Path(__file__).resolve().parents[3] / "models" / "default"
)
pytestmark = pytest.mark.skipif(
    not (MODEL / "manifest.json").exists(),
    reason=f"no shipped model in {MODEL} (models/default/manifest.json) yet; trained by trainer/reproduce_default.sh",
)
PIECES = DEMO_PIECES[:4] + DEMO_PIECES[9:15]  # 10 pieces: keyboard works and piano-reduced chorales
QUERIES = (PIECES[1], PIECES[3], PIECES[6])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from scoreid.inference import load_model

    root = tmp_path_factory.mktemp("quality")
    enc = load_model(MODEL)
    lib_dir = root / "lib"
    index = open_or_create(lib_dir, enc, MODEL, 25.0)
    for src in PIECES:
        folder = root / "sheets" / piece_id(src)
        engrave_piece(src, folder)
        assert add_folder(index, lib_dir, folder, enc, print) == "added"
    write_index(lib_dir, index)
    return Library.open(lib_dir), enc, root / "sheets"


def identify(lib, enc, audio: np.ndarray, seconds: float) -> str:
    ident = Identifier(lib, enc, hop_s=0.5)
    ident.push(audio[: int(seconds * C.SAMPLE_RATE)])
    ups = ident.finish()
    return ups[-1].ranking[0][0] if ups else ident.snapshot(seconds).ranking[0][0]


# Schoenberg op. 19/6 (nine bars of sparse chords, 18 s at 1.25x, heard from 5 s on) was taken for its
# sibling op. 19/2 with the published vote scheme (one vote per neighbour); similarity-weighted,
# length-normalised votes (scoreid.identify.tally.window_votes) identify it (2026-11-30).
@pytest.mark.parametrize("src", QUERIES)
def test_held_out_performance_identified_within_10s(built, src):
    lib, enc, sheets = built
    perf = shifted_performance(notes_of(sheets / piece_id(src)), tempo_factor=1.25, seed=3)
    audio = perf.audio[int(5 * C.SAMPLE_RATE) :]  # start inside the piece, not at its first bar
    assert identify(lib, enc, audio, 10.0) == piece_id(src)


def test_level_robustness_same_top1(built):
    lib, enc, sheets = built
    src = QUERIES[0]
    audio = shifted_performance(notes_of(sheets / piece_id(src)), tempo_factor=1.25, seed=4).audio
    audio = audio[: int(15 * C.SAMPLE_RATE)]
    audio = 0.5 * audio / np.abs(audio).max()  # peak -6 dBFS, so +6 dB does not clip
    tops = {db: identify(lib, enc, audio * 10 ** (db / 20), 15.0) for db in (-30, -15, 0, 6)}
    assert len(set(tops.values())) == 1, tops
    assert tops[0] == piece_id(src)


@pytest.mark.parametrize(
    "name", ["silence_10s", "white_noise_3s", "white_noise_10s", "pink_noise_10s", "sine_0.1s", "sine_5s"]
)
def test_no_music_is_never_identified(built, name):
    """Silence, noise and audio shorter than a few windows stay *unknown* at every hop (the
    calibrated identity of scoreid.identify.confidence), whatever the tally's top piece is."""
    lib, enc, _ = built
    sr, rng = C.SAMPLE_RATE, np.random.default_rng(0)
    kind, secs = name.rsplit("_", 1)
    n = int(float(secs[:-1]) * sr)
    if kind == "silence":
        audio = np.zeros(n, np.float32)
    elif kind == "white_noise":
        audio = 0.1 * rng.normal(size=n)
    elif kind == "pink_noise":
        spec = np.fft.rfft(rng.normal(size=n)) / np.sqrt(np.arange(1, n // 2 + 2))
        audio = np.fft.irfft(spec, n)
        audio *= 0.1 / audio.std()
    else:
        audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)
    ident = Identifier(lib, enc, hop_s=0.5)
    chunk = int(0.5 * sr)
    named = []
    for s in range(0, n, chunk):
        for u in ident.push(np.asarray(audio[s : s + chunk], np.float32)):
            if u.identity is not None:
                named.append((u.t, u.identity, round(u.confidence, 3), ident.evidence()))
    named += [(u.t, u.identity, round(u.confidence, 3)) for u in ident.finish() if u.identity is not None]
    assert not named
    assert not ident.confident()
