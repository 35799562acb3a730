"""Generated romantic piano textures: deterministic files, spelled in their key, engraved and aligned."""

from __future__ import annotations

from collections import Counter

from synthesis import textures
from synthesis.engrave import engrave


def test_same_seed_same_bytes_other_seed_other_piece(tmp_path):
    a = textures.write(7, tmp_path / "a", bars=8).read_bytes()
    b = textures.write(7, tmp_path / "b", bars=8).read_bytes()
    c = textures.write(8, tmp_path / "c", bars=8).read_bytes()
    assert a == b and a != c
    assert "CC0" in (tmp_path / "a" / "LICENSE.txt").read_text()


def test_pieces_span_remote_keys_and_every_texture():
    """Over 40 seeds: keys of five or more sharps or flats, several meters, every texture of both hands."""
    from music21 import key

    keys, meters = Counter(), Counter()
    for seed in range(40):
        s = textures.generate(seed, bars=4)
        first = s.parts[0].getElementsByClass("Measure")[0]
        keys[abs(first.getElementsByClass(key.KeySignature)[0].sharps)] += 1
        meters[first.timeSignature.ratioString] += 1
    assert sum(n for acc, n in keys.items() if acc >= 5) >= 5, keys
    assert len(meters) >= 5, meters
    assert set(textures.RIGHT) >= {"arpeggio", "runs", "tremolo", "melody_octaves"}
    assert set(textures.LEFT) >= {"broken_wide", "octave_bass", "tremolo"}


def test_every_texture_fills_its_bar_exactly():
    from fractions import Fraction

    import numpy as np
    from music21 import key, roman

    k = key.Key("c#")
    pcs = list(roman.RomanNumeral("V7", k).pitches)
    for fns in (textures.RIGHT, textures.LEFT):
        for name, fn in fns.items():
            for d in (Fraction(3, 2), Fraction(2), Fraction(3)):
                ev = fn(np.random.default_rng(0), pcs, k, d)
                assert sum(q for _p, q in ev) == d, (name, d)
                assert all(p.name.count("-") == 0 for ps, _q in ev for p in ps), (
                    name,
                    "c# minor has no flats",
                )


def test_a_generated_piece_engraves_with_its_noteheads_aligned(tmp_path):
    path = textures.write(3, tmp_path, bars=10)
    e = engrave(path)
    assert len(e.notes) >= 0.97 * len(e.midi_notes) > 100
    assert {s.page for s in e.systems} and all(s.bottom > s.top for s in e.systems)


def test_the_cli_refuses_a_count_below_one_and_leaves_no_temp_files(tmp_path, capsys, monkeypatch):
    import pytest
    from music21 import environment

    scratch = tmp_path / "m21-scratch"
    scratch.mkdir()
    monkeypatch.setattr(
        environment._EnvironmentCore, "getRootTempDir", lambda self: scratch
    )  # music21 writes there
    with pytest.raises(SystemExit) as e:
        textures.main(["--out", str(tmp_path / "x"), "--count", "0"])
    assert e.value.code == 2 and "--count must be at least 1" in capsys.readouterr().err
    assert textures.main(["--out", str(tmp_path / "y"), "--count", "1", "--seed", "5"]) == 0
    assert (tmp_path / "y" / "texture-0005.musicxml").is_file() and not list(scratch.iterdir())
