"""``scoreid identify``: streaming JSON lines, the final ranking, bad audio, with a randomly
initialised model exported in the test (format and plumbing; quality is in test_quality.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from scorefixtures import tones

from scoreid import contract as C
from scoreid.identify.stream import Identifier
from scoreid.inference import load_model
from scoreid.library import Library


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def test_identify_json_lines(tmp_path, lib, random_model):
    wav = tmp_path / "stereo44k.wav"
    x = tones(6.0, 44100)
    sf.write(wav, np.stack([x, 0.5 * x], axis=1), 44100)  # stereo at another rate
    res = cli("identify", lib, wav, "--json", "--hop", 0.5, "--plot", tmp_path / "id.png")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "id.png").stat().st_size > 10_000
    lines = [json.loads(s) for s in res.stdout.splitlines()]
    hops, final = lines[:-1], lines[-1]
    assert [round(d["t"], 2) for d in hops[:4]] == [0.5, 1.0, 1.5, 2.0]
    assert len(hops) >= 12
    pieces = set(Library.open(lib).piece_ids)
    for d in hops:
        assert len(d["top"]) <= 5
        for e in d["top"]:
            assert e["piece"] in pieces and 0 <= e["score"] <= 1
            assert {"page", "system", "x"} <= set(e)
    assert final["final"] is True and "confident" in final
    assert 1 <= len(final["top"]) <= len(pieces)
    assert abs(sum(e["score"] for e in final["top"]) - 1) < 1e-3
    # the engine's ranking (followed candidates ordered by tally and sequence evidence, not by vote
    # share alone: RESULTS.md "Sequence evidence"), as the library API gives it for the same audio
    from scoreid.audio.io import load_audio
    from scoreid.identify.engine import EngineSettings

    ident = Identifier(Library.open(lib), load_model(random_model), EngineSettings(hop_s=0.5))
    audio = load_audio(wav)
    for s in range(0, len(audio), 11025):
        ident.push(audio[s : s + 11025])
    ident.finish()
    want = ident.snapshot(len(audio) / C.SAMPLE_RATE).to_json(k=None, final=True)
    assert [e["piece"] for e in final["top"]] == [e["piece"] for e in want["top"]]
    assert [e["score"] for e in final["top"]] == [e["score"] for e in want["top"]]


def test_identify_streaming_equals_chunking(lib, random_model):
    """Feeding the audio in odd-sized chunks gives the same updates as hop-sized ones."""
    L = Library.open(lib)
    enc = load_model(random_model)
    x = tones(5.0, 22050, seed=1)
    a, b = Identifier(L, enc, hop_s=0.5), Identifier(L, enc, hop_s=0.5)
    ua = [u for s in range(0, len(x), 11025) for u in a.push(x[s : s + 11025])] + a.finish()
    ub = [u for s in range(0, len(x), 777) for u in b.push(x[s : s + 777])] + b.finish()
    assert [u.t for u in ua] == [u.t for u in ub]
    # same pieces in the same order; tallies equal up to float32 rounding of the spectrogram
    # (similarity-weighted votes: exp(ds / 0.02) turns a 1e-7 difference into ~1e-8 relative)
    ra, rb = ua[-1].ranking[:3], ub[-1].ranking[:3]
    assert [p for p, _, _ in ra] == [p for p, _, _ in rb]
    assert [v for _, _, v in ra] == pytest.approx([v for _, _, v in rb], rel=1e-5)


def test_push_frames_equals_pushing_the_audio(lib, random_model):
    """A spectrogram fed frame by frame (as bench/identify.py feeds stored corpus spectrograms)
    gives the same updates as the audio it was computed from."""
    from scoreid.audio.spectrogram import spectrogram

    L = Library.open(lib)
    enc = load_model(random_model)
    x = tones(6.0, 22050, seed=2)
    a, b = Identifier(L, enc, hop_s=0.5), Identifier(L, enc, hop_s=0.5)
    ua = [u for s in range(0, len(x), 11025) for u in a.push(x[s : s + 11025])]
    spec = spectrogram(x)
    ub = [u for s in range(0, len(spec), 10) for u in b.push_frames(spec[s : s + 10])]
    n = min(len(ua), len(ub))
    assert n >= 10 and [u.t for u in ua[:n]] == [u.t for u in ub[:n]]
    for u, v in zip(ua[:n], ub[:n], strict=True):
        assert [p for p, _s, _v in u.ranking[:3]] == [p for p, _s, _v in v.ranking[:3]]
        assert np.allclose([s for _p, s, _v in u.ranking[:3]], [s for _p, s, _v in v.ranking[:3]], atol=1e-4)
    with pytest.raises(ValueError, match="frames must be"):
        b.push_frames(np.zeros((4, 7), np.float32))


def test_time_to_identify_rule():
    from bench.identify import time_to_identify

    ts = [0.5, 1.0, 1.5, 2.0, 2.5]
    assert time_to_identify(ts, [False, True, False, True, True]) == 2.0  # right and stays right from 2.0
    assert time_to_identify(ts, [True] * 5) == 0.5
    assert time_to_identify(ts, [True, True, True, True, False]) == float("inf")  # wrong at the end
    assert time_to_identify([], []) == float("inf")


def test_identify_bad_audio(tmp_path, lib):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(22050 * 3, np.float32), 22050)
    res = cli("identify", lib, silence, "--json")
    assert res.returncode != 0 and "silence.wav: no audible sound" in res.stderr
    assert "Traceback" not in res.stderr

    good = tmp_path / "good.wav"
    sf.write(good, tones(4.0, 22050), 22050)
    trunc = tmp_path / "trunc.wav"
    data = good.read_bytes()
    trunc.write_bytes(data[:40])  # header cut short
    res = cli("identify", lib, trunc, good)  # one bad file, one good: exit 0, bad one named
    assert res.returncode == 0, res.stderr
    assert "trunc.wav" in res.stderr and "Traceback" not in res.stderr
    assert "good.wav:" in res.stdout
    res = cli("identify", lib, trunc)
    assert res.returncode != 0 and "trunc.wav" in res.stderr and "Traceback" not in res.stderr

    noise = tmp_path / "noise.wav"
    sf.write(noise, (np.random.default_rng(0).normal(0, 0.1, 22050 * 4)).astype(np.float32), 22050)
    res = cli("identify", lib, noise, "--json")
    assert res.returncode == 0 and "Traceback" not in res.stderr  # something was done
    assert json.loads(res.stdout.splitlines()[-1])["final"] is True

    res = cli("identify", tmp_path / "nolib", good)
    assert res.returncode != 0 and "not a scoreid library" in res.stderr
    broken = tmp_path / "broken-lib"
    shutil.copytree(lib, broken)
    next((broken / "pieces").glob("*.npz")).write_bytes(b"junk")
    res = cli("identify", broken, good)
    assert res.returncode != 0 and "unreadable piece data" in res.stderr and "Traceback" not in res.stderr
