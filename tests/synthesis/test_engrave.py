"""Engraving: noteheads on ink, onsets from the timemap, ties dropped, grace notes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scorefixtures import N_SOUNDING_MIN, noteheads_on_ink, write_piece

from scoreid import contract as C
from synthesis.engrave import EngraveError, EngraveOptions, engrave, engrave_looks, parse_midi


@pytest.fixture(scope="module")
def piece(tmp_path_factory):
    return write_piece(tmp_path_factory.mktemp("score") / "isolated.krn")


@pytest.mark.parametrize("font", ["Leipzig", "Bravura", "Gootville", "Petaluma"])
def test_noteheads_lie_on_ink(piece, font):
    eng = engrave(piece, EngraveOptions(font=font))
    assert len(eng.notes) >= N_SOUNDING_MIN
    assert noteheads_on_ink(eng) >= 0.98
    # the check can fail: boxes moved by two notehead widths mostly land on paper or staff lines
    assert noteheads_on_ink(eng, dx=2.0, dy=-1.5) < 0.9


def test_render_scale_and_systems(piece):
    eng = engrave(piece)
    assert eng.pages[0].dtype == np.uint8 and eng.pages[0].ndim == 2
    assert eng.staff_space_units > 0
    # the grand staff: 2 staves of 4 spaces plus the gap, at the contract's staff spacing
    s = eng.systems[0]
    height_spaces = (s.bottom - s.top) / C.STAFF_SPACE_PX
    assert 12 <= height_spaces <= 20
    assert s.left < min(n.x for n in eng.notes) and s.right > max(n.x for n in eng.notes)
    for n in eng.notes:
        sys = eng.systems[n.system]
        assert sys.page == n.page


def test_onsets_ties_and_grace_notes(piece):
    eng = engrave(piece)
    assert eng.dropped.get("tie") == 1  # the tied a4 continuation has no onset of its own
    onsets = sorted({round(n.onset_s, 3) for n in eng.notes})
    assert onsets[:5] == [0.0, 0.5, 1.0, 1.5, 2.0]  # MM120 quarters
    # every kept notehead has a MIDI note-on of its pitch at its onset (the alignment rule)
    for n in eng.notes:
        assert any(m.pitch == n.pitch and abs(m.onset_s - n.onset_s) <= 0.005 for m in eng.midi_notes)
    grace = [n for n in eng.notes if n.pitch == 74]
    assert len(grace) == 1 and 4.4 < grace[0].onset_s < 4.5  # the grace note before e5 at 4.5 s
    assert eng.title == "Isolated notes" and eng.composer == "Tester, Ann"


def test_looks_share_ids_and_differ_in_layout(piece):
    looks = [EngraveOptions(font="Leipzig", page_width=1700), EngraveOptions(font="Bravura", page_width=2500)]
    a, b = engrave_looks(piece, looks)
    assert [n.id for n in a.notes] == [n.id for n in b.notes]
    assert a.pages[0].shape[1] < b.pages[0].shape[1]
    single = engrave(piece, looks[1])
    assert all(np.array_equal(x, y) for x, y in zip(b.pages, single.pages, strict=True))


def test_deterministic(piece):
    a, b = engrave(piece), engrave(piece)
    assert [n.id for n in a.notes] == [n.id for n in b.notes]
    assert all(np.array_equal(x, y) for x, y in zip(a.pages, b.pages, strict=True))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.krn", "", "empty file"),
        (
            "broken.musicxml",
            "<score-partwise><part",
            "not readable as music|could not read|no sounding notes",
        ),
        ("picture.png", "\x89PNG not music", "not a score file"),
        ("silence.krn", "**kern\n*M4/4\n=1\n1r\n==\n*-\n", "no sounding notes|no notehead"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(EngraveError, match=reason) as ei:
        engrave(path)
    assert "\n" not in str(ei.value) and name in str(ei.value)


def test_missing_source_and_music21_name():
    with pytest.raises(EngraveError, match="no such file"):
        engrave("/nonexistent/zzz.krn")


def test_parse_midi_roundtrip(piece):
    eng = engrave(piece)
    assert parse_midi(b"MThd\x00\x00\x00\x06\x00\x00\x00\x00\x01\xe0") == []
    assert len(eng.midi_notes) == len({(m.pitch, round(m.onset_s, 3)) for m in eng.midi_notes})


def test_music21_names_and_conversion(tmp_path):
    from synthesis.engrave import resolve_source

    assert resolve_source("joplin/maple_leaf_rag").suffix == ".mxl"
    abc = tmp_path / "tune.abc"  # not a Verovio input here: converted to MusicXML with music21
    abc.write_text("X:1\nT:Tune\nM:4/4\nL:1/4\nQ:1/4=120\nK:C\nC E G c | G E C2 |]\n")
    eng = engrave(abc)
    assert [n.pitch for n in eng.notes] == [60, 64, 67, 72, 67, 64, 60]
    assert noteheads_on_ink(eng) >= 0.98


@pytest.mark.parametrize("semitones", [3, -5, 6])
def test_a_transposed_score_sounds_moved_and_its_noteheads_stay_on_ink(piece, semitones):
    """``transpose=n``: every MIDI note and every notehead's pitch moves exactly n semitones, the
    key signature moves with it (C -> Eb, G, F#), and the engraving is aligned as before."""
    from synthesis.engrave import LoadedScore

    base = engrave(piece)
    moved = LoadedScore(piece, transpose=semitones)
    eng = moved.render()
    assert [m.pitch + semitones for m in base.midi_notes] == [m.pitch for m in eng.midi_notes]
    assert [m.onset_s for m in base.midi_notes] == [m.onset_s for m in eng.midi_notes]
    assert len(eng.notes) == len(base.notes) and noteheads_on_ink(eng) >= 0.98
    assert [n.pitch + semitones for n in base.notes] == [n.pitch for n in eng.notes]
    sig = {3: 'sig="3f"', -5: 'sig="1s"', 6: 'sig="6s"'}[semitones]
    assert sig in moved.tk.getMEI()


def test_transpose_option_names_the_target_tonic_in_a_key_that_exists():
    from synthesis.engrave import tonic_pitch_class, transpose_option

    a_minor = '<keySig xml:id="k" mode="minor" sig="0" pname="a" />'
    assert tonic_pitch_class(a_minor) == 9
    assert transpose_option(a_minor, -1) == "Ab"  # A-flat minor (7 flats), not G-sharp minor
    assert transpose_option('<keySig sig="1f" mode="major" pname="f" />', 1) == "F#"
    assert tonic_pitch_class('<keySig sig="3f" mode="minor"/>') == 0  # c minor, from the signature
    assert transpose_option("<measure/>", 3) == "+3"  # no key: the plain interval
    with pytest.raises(EngraveError, match="at most 6"):
        transpose_option(a_minor, 7)
