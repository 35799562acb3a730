"""The LilyPond engraver: the same Engraving as Verovio's, from another engraver's hand."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scorefixtures import N_SOUNDING_MIN, noteheads_on_ink, write_piece

from scoreid import contract as C
from synthesis.engrave import EngraveError, engrave
from synthesis.lilypond import (
    LilyLook,
    OffPageError,
    _drop_token,
    _engraving,
    _engraving_on_page,
    _prepare,
    _run_lilypond,
    engrave_lilypond,
    path_bbox,
)


@pytest.fixture(scope="module")
def piece(tmp_path_factory):
    return write_piece(tmp_path_factory.mktemp("score") / "isolated.krn")


@pytest.fixture(scope="module")
def looks(piece):
    return engrave_lilypond(piece, [LilyLook(), LilyLook(staff_size=24, paper_width_mm=110)])


def test_noteheads_lie_on_ink_at_the_contract_scale(looks):
    eng = looks[0]
    assert len(eng.notes) >= N_SOUNDING_MIN and noteheads_on_ink(eng) >= 0.98
    assert noteheads_on_ink(eng, dx=2.0, dy=-1.5) < 0.9  # the check can fail: moved boxes land on paper
    assert eng.staff_space_units == pytest.approx(1.0, abs=0.05)  # LilyPond's SVG unit is the staff space
    s = eng.systems[0]
    assert 12 <= (s.bottom - s.top) / C.STAFF_SPACE_PX <= 20  # a grand staff at 7 px per staff space
    for n in eng.notes:
        sys = eng.systems[n.system]
        assert sys.page == n.page and sys.top - 40 <= n.y <= sys.bottom + 40
        assert sys.left <= n.x <= sys.right


def test_onsets_pitches_and_ties_agree_with_verovio(piece, looks):
    """The same score through both engravers: the same sounding notes at the same onsets (MM 120),
    the tied continuation dropped by both."""
    ver = engrave(piece)
    for eng in looks:
        assert eng.dropped.get("tie") == 1
        for mine, theirs in ((eng.notes, ver.notes), (eng.midi_notes, ver.midi_notes)):
            got, want = (
                sorted((n.onset_s, n.pitch) for n in mine),
                sorted((n.onset_s, n.pitch) for n in theirs),
            )
            assert [p for _, p in got] == [p for _, p in want]
            # the same onsets; the grace note's lead differs by a few ms between the engravers' MIDI
            assert np.abs(np.array([t for t, _ in got]) - [t for t, _ in want]).max() < 0.05


def test_looks_differ_in_layout_and_are_deterministic(piece, looks):
    a, b = looks
    width = [e.systems[0].right - e.systems[0].left for e in (a, b)]  # px at 7 px per staff space
    assert width[1] < 0.8 * width[0]  # larger staves on a narrower page: fewer staff spaces a line
    (again,) = engrave_lilypond(piece, [LilyLook()])
    assert all(np.array_equal(p, q) for p, q in zip(again.pages, a.pages))
    assert [(n.x, n.y, n.onset_s) for n in again.notes] == [(n.x, n.y, n.onset_s) for n in a.notes]


def test_bad_input_and_bad_looks_are_one_clear_error(tmp_path, piece):
    bad = tmp_path / "broken.musicxml"
    bad.write_text("<score-partwise><part")
    with pytest.raises(EngraveError):
        engrave_lilypond(bad, [LilyLook()])
    with pytest.raises(EngraveError, match="staff size"):
        engrave_lilypond(piece, [LilyLook(staff_size=40)])


def test_a_syntax_error_of_the_converter_is_mended_without_unbalancing_the_music():
    text = "\\version \"2.24.1\"\n{ c'4 _\\rinf. d'4 }\n"
    assert _drop_token(text, 2, 8) == "\\version \"2.24.1\"\n{ c'4  d'4 }\n"  # the mark, then the token
    assert _drop_token(text, 2, 1) is None  # a brace is never dropped
    assert _drop_token(text, 9, 1) is None
    ly = _prepare(
        '\\version "2.24.1"\n[ = #(make-dynamic-script "[")\ncon bravura = #(make-dynamic-script "x")\n'
        'ok = #(make-dynamic-script "ok")\n\\set Staff.instrumentName = "Piano"\n',
        LilyLook(),
        "t.tsv",
    )
    assert 'make-dynamic-script "["' not in ly and "bravura" not in ly and "ok = #(make-dynamic-script" in ly
    assert "instrumentName" not in ly and "set-global-staff-size 20" in ly


def test_word_dynamics_and_fractional_tempi_of_the_converter_engrave(tmp_path):
    """musicxml2ly writes a dynamic of words ("crescendo", which the dynamics font cannot set: the SVG
    backend died on the missing glyphs) and a MusicXML tempo as it is (LilyPond reads integer
    metronome marks only): both failed real-dev Beethoven sonatas."""
    ly = (
        '\\version "2.24.1"\ncrescendo = #(make-dynamic-script "crescendo")\n'
        "\\score { { c'4 _\\crescendo d'4 e'4 f'4 } \\layout {} \\midi { \\tempo 4 = 97.9998 } }\n"
    )
    pages, midi, table = _run_lilypond(ly, LilyLook(), tmp_path)
    assert len(pages) == 1 and midi[:4] == b"MThd" and len(table) == 4


def test_a_tuplet_without_its_stop_engraves_without_tuplet_marks(tmp_path):
    """musicxml2ly crashes on a tuplet whose stop is missing (real-dev Beethoven sonatas 3-2 and 7-4),
    and music21's rewrite keeps the marks: the marks are dropped, the durations kept."""
    import music21 as m21

    m = m21.stream.Measure()
    m.timeSignature = m21.meter.TimeSignature("2/4")
    for name in ("C4", "D4", "E4"):
        m.append(m21.note.Note(name, quarterLength=1 / 3))
    m.append(m21.note.Note("F4", quarterLength=1))
    part = m21.stream.Part([m])
    score = m21.stream.Score([part])
    xml = tmp_path / "tuplet.musicxml"
    score.write("musicxml", xml)
    xml.write_text(re.sub(r'<tuplet [^>]*type="stop"[^>]*/>', "", xml.read_text()))
    (eng,) = engrave_lilypond(xml, [LilyLook()])
    assert [round(n.quarters * 3) for n in eng.notes] == [0, 1, 2, 3]  # triplet eighths, then the quarter


def test_music_set_past_the_page_edge_is_refused(tmp_path):
    """Music LilyPond cannot break into lines (real-dev's Mazeppa: staves out of step after
    musicxml2ly) runs off the page: refused, not kept as a page whose notes are not on it."""
    ly = (
        "\\version \"2.24.1\"\n\\score { { \\repeat unfold 300 { c'4 e'4 } } \\layout { \\context { \\Score "
        "\\override NonMusicalPaperColumn.line-break-permission = ##f } } \\midi { } }\n"
    )
    with pytest.raises(EngraveError, match="past the page's edge"):
        _engraving(tmp_path / "x.ly", ly, LilyLook(), tmp_path, "title", "composer")


def test_path_bbox_follows_relative_commands():
    head = "M218 136c66 0 108 -36 108 -89c0 -89 -113 -183 -218 -183z"  # a LilyPond note head, half of it
    assert path_bbox(head) == (108.0, -136.0, 326.0, 136.0)
    assert path_bbox("M0 0h10v5H2z") == (0.0, 0.0, 10.0, 5.0)


def test_staves_out_of_step_are_set_again_with_breaks_at_every_bar_line(tmp_path):
    """musicxml2ly puts the staves of some scores out of step (an overfull measure, a tuplet across a
    bar line): a note of one staff then sounds across every bar line, LilyPond breaks no line and the
    music runs off the page (real-dev Beethoven 17-2, Haydn 39-1). Set again with breaks allowed at
    every bar line, it fits the page."""
    ly = (
        "\\version \"2.24.1\"\n\\score { \\new PianoStaff << \\new Staff { \\repeat unfold 160 { c''4 e''4 } }"
        " \\new Staff { \\clef bass r8 \\repeat unfold 159 { c4 e4 } c4 e8 } >> \\layout { } \\midi { } }\n"
    )
    with pytest.raises(OffPageError):
        _engraving(tmp_path / "x.ly", ly, LilyLook(), tmp_path, "title", "composer")
    eng, breaks = _engraving_on_page(tmp_path / "x.ly", ly, LilyLook(), tmp_path, "title", "composer")
    assert breaks == "bars" and len(eng.systems) > 4
    assert all(0 <= n.x <= eng.pages[n.page].shape[1] for n in eng.notes)
    bass = sorted(round(n.quarters * 2) for n in eng.notes if n.pitch < 60)
    assert bass[:3] == [1, 3, 5]  # in eighths: the bass an eighth late, as written
