"""Engraving with LilyPond: a second engraver's hand beside Verovio's (issue 28).

The sheet encoder has only ever seen Verovio's engraving; the pages users bring come from other
engravers. ``engrave_lilypond(source, looks)`` gives the same :class:`synthesis.engrave.Engraving`
as :func:`synthesis.engrave.engrave_looks` — grey pages at the contract's render scale, staff
systems, every sounding notehead with its onset and pitch, the MIDI notes — from GNU LilyPond
(Debian ``lilypond``), so every consumer of an engraving (the corpus, the real-dev library) can use
either:

1. the score as MusicXML (Humdrum and other formats converted by music21, as the Verovio path does
   for files Verovio cannot read), then ``musicxml2ly``;
2. into the LilyPond file go a Scheme engraver (:data:`LOGGER`) that gives every note head an SVG id
   and writes its musical moment and pitch to a table, an ``output-attributes`` callback that tags
   every staff symbol with its system, the look's staff size and paper, and ``\\midi``;
3. ``lilypond --svg`` in a temporary directory (a subprocess with a timeout: a file LilyPond chokes
   on costs only itself): one SVG per page, the MIDI file, the note-head table;
4. SVG units are staff spaces; a system is the union of its staff symbols' lines; a note head's box
   is its glyph path's; a note head is kept only if a MIDI note-on of its pitch starts at its moment
   (ticks = moment x 4 x ticks per quarter, within one tick) — tie continuations and grace notes
   drop out, as in the Verovio path — and its onset in seconds is that note-on's, through the MIDI
   file's tempo map. Repeats are not unfolded (LilyPond's MIDI plays a score straight through
   unless told otherwise), so each note head has one onset.

Looks (:class:`LilyLook`) vary the staff size against the paper (how many bars a system holds)
and the paper width. LilyPond's one music font (Emmentaler) is its own look: thicker stems and
beams, rounder heads, other spacing and slurs than any Verovio font.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from synthesis.engrave import (
    SVG_NS,
    EngraveError,
    EngraveOptions,
    Engraving,
    MidiNote,
    Notehead,
    SystemBox,
    _to_musicxml,
    rasterise_svg,
    render_scale,
    resolve_source,
)

LILYPOND_TIMEOUT_S = 300.0
#: a note head's note-on may sit this many MIDI ticks from its moment (rounding of tuplets)
TICK_TOLERANCE = 1

#: The Scheme that tags note heads and staff symbols; ``NH_TABLE`` is replaced by the table's path.
LOGGER = r"""
#(define scoreid-port (open-output-file "NH_TABLE"))
#(define scoreid-count 0)
#(define (scoreid-system grob)
   (let ((sys (ly:grob-system grob)))
     (if (ly:grob? sys) (number->string (object-address sys) 16) "none")))
#(define (scoreid-engraver context)
   (make-engraver
    (acknowledgers
     ((note-head-interface engraver grob source-engraver)
      (let* ((cause (ly:grob-property grob 'cause))
             (pitch (and (ly:stream-event? cause) (ly:event-property cause 'pitch)))
             (mom (ly:context-current-moment context))
             (key (format #f "nh~a" scoreid-count)))
        (set! scoreid-count (+ scoreid-count 1))
        (ly:grob-set-property! grob 'output-attributes
          (lambda (g) (list (cons 'id key) (cons 'class (format #f "nh s~a" (scoreid-system g))))))
        (format scoreid-port "~a\t~a\t~a\t~a\n" key (ly:moment-main mom) (ly:moment-grace mom)
                (if (ly:pitch? pitch) (+ 60 (ly:pitch-semitones pitch)) -1)))))))
\layout {
  \context { \Voice \consists #scoreid-engraver }
  \context { \Staff \override StaffSymbol.output-attributes =
     #(lambda (g) (list (cons 'class (format #f "staff s~a" (scoreid-system g))))) }
}
"""


@dataclass(frozen=True)
class LilyLook:
    """One LilyPond look: the staff size (pt; LilyPond's default 20) and the paper (mm)."""

    staff_size: float = 20.0
    paper_width_mm: float = 210.0
    paper_height_mm: float = 297.0

    def check(self) -> None:
        if not (11.0 <= self.staff_size <= 26.0):
            raise EngraveError(f"LilyPond staff size {self.staff_size}: between 11 and 26 pt")
        if not (100.0 <= self.paper_width_mm <= 420.0 and 100.0 <= self.paper_height_mm <= 600.0):
            raise EngraveError("LilyPond paper: 100-420 mm wide, 100-600 mm high")


def lilypond_available() -> bool:
    return shutil.which("lilypond") is not None and shutil.which("musicxml2ly") is not None


def _musicxml2ly(xml: Path, out: Path) -> str:
    """``musicxml2ly`` on one file (the source's own line and page breaks dropped); '' when it fails."""
    try:
        r = subprocess.run(
            ["musicxml2ly", "--no-beaming", "--npl", "-o", str(out), str(xml)],
            capture_output=True,
            text=True,
            timeout=LILYPOND_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return ""
    if r.returncode != 0 or not out.is_file():
        return ""
    return out.read_text(encoding="utf-8")


def _without_tuplet_marks(xml: str) -> str:
    """MusicXML without its ``<tuplet>`` notations (brackets and numbers): the notes keep their
    ``<time-modification>``, so musicxml2ly writes scaled durations (``c8*2/3``) instead of grouping
    tuplets — the step it crashes in on a tuplet whose start or stop is missing."""
    xml = re.sub(r"<tuplet\b[^>]*/>", "", xml)
    return re.sub(r"<tuplet\b[^>]*>.*?</tuplet>", "", xml, flags=re.S)


def to_lilypond(source: str | Path, workdir: Path) -> str:
    """The score as LilyPond text: ``musicxml2ly`` of its MusicXML, or of music21's rewriting of it
    when musicxml2ly fails on the file as it is (it crashes on some tuplets and text layouts), or of
    that — or of the original, when music21 cannot read it — without tuplet marks (a tuplet without
    its start or stop crashes musicxml2ly either way)."""
    path = resolve_source(source)
    if not lilypond_available():
        raise EngraveError("LilyPond is not installed (Debian package lilypond; ./setup.sh installs it)")
    out = workdir / "score.ly"
    xml = workdir / "score.musicxml"
    original = ""
    if path.suffix.lower() in (".musicxml", ".xml"):
        ly = _musicxml2ly(path, out)
        if ly:
            return ly
        original = path.read_text(encoding="utf-8", errors="replace")
    try:
        rewritten = _to_musicxml(path)
    except EngraveError:
        if not original:  # nothing else to convert
            raise
        rewritten = ""  # music21 cannot read it either: the original, without tuplet marks
    if rewritten:
        xml.write_text(rewritten, encoding="utf-8")
        ly = _musicxml2ly(xml, out)
        if ly:
            return ly
    xml.write_text(_without_tuplet_marks(rewritten or original), encoding="utf-8")
    ly = _musicxml2ly(xml, out)
    if not ly:
        raise EngraveError(f"{path}: musicxml2ly could not convert it")
    return ly


#: line breaks LilyPond is let take when an engraving runs off the page (``_prepare``'s ``breaks``):
#: "bars" — at every bar line, also where a note of one staff sounds across it (musicxml2ly put the
#: staves out of step: an overfull measure, a tuplet across a bar line). Breaks between bar lines
#: too (``forbidBreakBetweenBarLines = ##f``) were tried on the real-dev scores still off the page
#: after "bars": LilyPond's line breaker then ran past its 300-s limit on every one of them.
BREAKS = ("", "bars")
_FREE_BREAKS = {
    "": "",
    "bars": r"\layout { \context { \Voice \remove Forbid_line_break_engraver } }" "\n",
}


def _prepare(ly: str, look: LilyLook, table: Path, breaks: str = "") -> str:
    """The converted file with the logger, the look's staff size and paper, no tagline, and MIDI;
    ``breaks`` (one of :data:`BREAKS`) lets LilyPond break lines where it would not."""
    look.check()
    ly = ly.replace("\\pointAndClickOff", "")
    # ligature brackets (musicxml2ly's reading of MusicXML <bracket>): a syntax error after a chord
    ly = re.sub(r"-?\\[\[\]]", "", ly)
    # dynamics musicxml2ly defines under names LilyPond cannot read ("[", "cresc.", "con bravura")
    ly = re.sub(r"(?m)^(?![A-Za-z]+ = )[^\n]* = #\(make-dynamic-script [^\n]*$", "", ly)
    # a dynamic of words ("crescendo"): the dynamics font has only p f m r s z n, and the SVG backend
    # dies on a missing glyph, so words are set in italic text like a printed "cresc."
    ly = re.sub(
        r'make-dynamic-script "([^"]*[^pfmrszn"][^"]*)"',
        lambda m: f'make-dynamic-script (markup #:normal-text #:italic "{m.group(1)}")',
        ly,
    )
    # no "Piano" / "Pno" before the systems: a printed piano score names no instrument
    ly = re.sub(
        r"\\set\s+(?:Piano)?Staff\.(?:short)?[iI]nstrumentName\s*=\s*(?:\"[^\"]*\"|#?\\markup\s*\{[^}]*\})",
        "",
        ly,
    )
    ly = re.sub(r"#\(set-global-staff-size [\d.]+\)", "", ly)
    # a fractional metronome mark (musicxml2ly writes the MusicXML tempo as it is): LilyPond reads integers only
    ly = re.sub(
        r"(\\tempo\s+\d+\.*\s*=\s*)(\d+\.\d+)", lambda m: f"{m.group(1)}{round(float(m.group(2)))}", ly
    )
    head = (
        f"#(set-global-staff-size {look.staff_size:g})\n"
        f"#(set-default-paper-size '(cons (* {look.paper_width_mm:g} mm) (* {look.paper_height_mm:g} mm)))\n"
        "\\header { tagline = ##f }\n" + LOGGER.replace("NH_TABLE", str(table)) + _FREE_BREAKS[breaks]
    )
    m = re.search(r"\\version \"[^\"]*\"\n", ly)
    at = m.end() if m else 0
    ly = ly[:at] + head + ly[at:]
    ly, n = re.subn(r"%\s*\\midi\s*\{", r"\\midi {", ly)
    if n == 0 and "\\midi" not in ly:
        ly = re.sub(r"(\\layout\s*\{\s*\})", r"\1\n    \\midi { }", ly, count=1)
    return ly


# --------------------------------------------------------------------------- SVG and MIDI parsing
_TRANSLATE = re.compile(r"translate\(\s*([-\d.eE]+)[ ,]+([-\d.eE]+)\s*\)")
_SCALE = re.compile(r"scale\(\s*([-\d.eE]+)[ ,]+([-\d.eE]+)\s*\)")


def _translate(el: ET.Element) -> tuple[float, float]:
    m = _TRANSLATE.search(el.get("transform") or "")
    return (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)


def path_bbox(d: str) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of a path's end and control points (absolute and relative commands)."""
    toks = re.findall(r"[MmLlHhVvCcSsQqTtZz]|-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", d)
    sizes = {"M": 2, "L": 2, "T": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "Z": 0}
    x = y = 0.0
    pts: list[tuple[float, float]] = []
    cmd, i = "M", 0
    while i < len(toks):
        if toks[i].isalpha():
            cmd = toks[i]
            i += 1
            if cmd in "Zz":
                continue
        n = sizes[cmd.upper()]
        if n == 0 or i + n > len(toks):
            break
        vals = [float(v) for v in toks[i : i + n]]
        i += n
        rel = cmd.islower()
        if cmd.upper() == "H":
            x = vals[0] + (x if rel else 0.0)
            pts.append((x, y))
            continue
        if cmd.upper() == "V":
            y = vals[0] + (y if rel else 0.0)
            pts.append((x, y))
            continue
        xs, ys = vals[0::2], vals[1::2]
        if rel:
            xs, ys = [v + x for v in xs], [v + y for v in ys]
        pts.extend(zip(xs, ys))
        x, y = xs[-1], ys[-1]
    if not pts:
        return None
    a = np.array(pts)
    return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 0].max()), float(a[:, 1].max())


@dataclass
class _LilyPage:
    width_units: float
    height_units: float
    systems: dict[str, tuple[float, float, float, float]]  # system key -> top, bottom, left, right
    spaces: list[float]
    notes: list[tuple[str, str, float, float, float, float]]  # id, system key, x, y, w, h


def parse_lily_svg(svg: str) -> _LilyPage:
    """Systems (union of their staff lines) and note-head boxes of one LilyPond SVG page."""
    root = ET.fromstring(svg)
    vb = [float(v) for v in (root.get("viewBox") or "0 0 0 0").split()]
    systems: dict[str, list[float]] = {}
    spaces: list[float] = []
    notes: list[tuple[str, str, float, float, float, float]] = []
    for g in root.iter(SVG_NS + "g"):
        cls = (g.get("class") or "").split()
        if "staff" in cls and len(cls) == 2:
            ys, xs = [], []
            for lg in g.findall(SVG_NS + "g"):
                tx, ty = _translate(lg)
                for ln in lg.findall(SVG_NS + "line"):
                    y = ty + float(ln.get("y1", 0))
                    ys.append(y)
                    xs += [tx + float(ln.get("x1", 0)), tx + float(ln.get("x2", 0))]
            if len(ys) >= 2:
                spaces.extend(np.diff(sorted(ys)).tolist())
                box = systems.setdefault(cls[1], [np.inf, -np.inf, np.inf, -np.inf])
                box[:] = [
                    min(box[0], min(ys)),
                    max(box[1], max(ys)),
                    min(box[2], min(xs)),
                    max(box[3], max(xs)),
                ]
        elif "nh" in cls and g.get("id") and len(cls) == 2:
            inner = g.find(f".//{SVG_NS}g[@transform]")
            path = inner.find(SVG_NS + "path") if inner is not None else None
            if inner is None or path is None:
                continue
            tx, ty = _translate(inner)
            sm = _SCALE.search(path.get("transform") or "")
            sx, sy = (float(sm.group(1)), float(sm.group(2))) if sm else (1.0, 1.0)
            bb = path_bbox(path.get("d") or "")
            if bb is None:
                continue
            xa, xb = sorted((bb[0] * sx, bb[2] * sx))
            ya, yb = sorted((bb[1] * sy, bb[3] * sy))
            if xb - xa <= 0 or yb - ya <= 0:
                continue
            notes.append((g.get("id", ""), cls[1], tx + (xa + xb) / 2, ty + (ya + yb) / 2, xb - xa, yb - ya))
    boxes = {k: (v[0], v[1], v[2], v[3]) for k, v in systems.items()}
    return _LilyPage(vb[2], vb[3], boxes, spaces, notes)


@dataclass
class _MidiOn:
    tick: int
    pitch: int
    onset_s: float
    offset_s: float
    velocity: int


def read_midi_ticks(data: bytes) -> tuple[list[_MidiOn], int]:
    """Every note of a MIDI file with its note-on tick and its times through the tempo map;
    and the ticks per quarter note."""
    import io

    import mido

    mf = mido.MidiFile(file=io.BytesIO(data))
    tempos: list[tuple[int, int]] = [(0, 500000)]
    events: list[tuple[int, int, str, int, int]] = []  # tick, order, kind, pitch(+chan), velocity
    for tr in mf.tracks:
        t = 0
        for msg in tr:
            t += msg.time
            if msg.type == "set_tempo":
                tempos.append((t, msg.tempo))
            elif msg.type == "note_on" and msg.velocity > 0:
                events.append((t, 1, "on", msg.channel * 128 + msg.note, msg.velocity))
            elif msg.type in ("note_off", "note_on"):
                events.append((t, 0, "off", msg.channel * 128 + msg.note, 0))
    tempos.sort(key=lambda x: x[0])
    tpq = mf.ticks_per_beat
    marks = [(0, 0.0, 500000)]
    for tick, tempo in tempos:
        t0, s0, q0 = marks[-1]
        marks.append((tick, s0 + (tick - t0) * q0 / 1e6 / tpq, tempo))
    mt = np.array([m[0] for m in marks])

    def seconds(tick: int) -> float:
        k = int(np.searchsorted(mt, tick, side="right")) - 1
        t0, s0, q0 = marks[k]
        return s0 + (tick - t0) * q0 / 1e6 / tpq

    events.sort()
    open_: dict[int, list[tuple[int, int]]] = {}
    notes: list[_MidiOn] = []
    for tick, _o, kind, key, vel in events:
        if kind == "on":
            open_.setdefault(key, []).append((tick, vel))
        elif open_.get(key):
            t_on, v = open_[key].pop(0)
            notes.append(_MidiOn(t_on, key % 128, seconds(t_on), seconds(tick), v))
    notes.sort(key=lambda n: (n.tick, n.pitch))
    return notes, tpq


def read_table(path: Path) -> dict[str, tuple[Fraction, Fraction, int]]:
    """The logger's table: note-head id -> (moment, grace moment, MIDI pitch)."""
    out: dict[str, tuple[Fraction, Fraction, int]] = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            out[parts[0]] = (Fraction(parts[1]), Fraction(parts[2]), int(parts[3]))
    return out


# --------------------------------------------------------------------------- engraving
#: rounds of mending syntax errors (every reported offending token dropped) before a file is given up
MAX_REPAIRS = 4
#: more note heads than this fraction beyond the page's left or right edge: the engraving is set
#: again with freer line breaks (:data:`BREAKS`), and refused when it still runs off (musicxml2ly put
#: the staves out of step — overfull measures of one staff — so every bar line had a note sounding
#: across it, where LilyPond does not break, and lines ran off the page: real-dev's Mazeppa)
OFF_PAGE_MAX = 0.01
_ERROR_AT = re.compile(r"look\.ly:(\d+):(\d+): error: (?!errors found)")


class OffPageError(EngraveError):
    """An engraving with more than :data:`OFF_PAGE_MAX` of its note heads past the page's edge."""


def _drop_token(text: str, line: int, col: int) -> str | None:
    """``text`` without the token at ``line``:``col`` (LilyPond's 1-based positions; None: nothing
    there), and without the direction mark (``_``, ``^``, ``-``) that attached it to a note."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    if not 1 <= line <= len(starts):
        return None
    at = starts[line - 1] + col - 1
    m = re.compile(r"\S+").match(text, at)
    if m is None or col < 1 or m.group(0) in ("{", "}", "<<", ">>"):  # never unbalance the structure
        return None
    before = text[: m.start()]
    k = len(before.rstrip())
    if k and before[k - 1] in "_^-":
        before = before[: k - 1] + before[k:]
    return before + text[m.end() :]


def _run_lilypond(
    ly: str, look: LilyLook, tmp: Path, breaks: str = ""
) -> tuple[list[str], bytes, dict[str, tuple[Fraction, Fraction, int]]]:
    """LilyPond on the prepared file; a syntax error musicxml2ly wrote (a stray articulation, a
    dynamic LilyPond does not know) is mended by dropping the tokens LilyPond reports, for at most
    MAX_REPAIRS rounds."""
    table = tmp / "noteheads.tsv"
    src = tmp / "look.ly"
    text = _prepare(ly, look, table, breaks)
    for _ in range(MAX_REPAIRS + 1):
        src.write_text(text, encoding="utf-8")
        try:
            r = subprocess.run(
                ["lilypond", "-s", "--svg", "-dno-point-and-click", "-o", str(tmp / "look"), str(src)],
                capture_output=True,
                text=True,
                timeout=LILYPOND_TIMEOUT_S,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            raise EngraveError(f"LilyPond took over {LILYPOND_TIMEOUT_S:.0f} s") from None
        mended: str | None = text
        for line, col in sorted(
            {(int(a), int(b)) for a, b in _ERROR_AT.findall(r.stderr or "")}, reverse=True
        ):
            mended = (
                _drop_token(mended, line, col) if mended is not None else None
            )  # last first: positions hold
        if r.returncode == 0 or mended is None or mended == text:
            break
        text = mended
        for p in tmp.glob("look*.svg"):
            p.unlink()
    svgs = sorted(tmp.glob("look*.svg"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    midi = next(iter(sorted(tmp.glob("look*.mid*"))), None)
    if r.returncode != 0 or not svgs or midi is None or not table.is_file():
        raise EngraveError(f"LilyPond failed: {(r.stderr or r.stdout).strip()[-300:]}")
    pages = [p.read_text(encoding="utf-8") for p in svgs]
    data = midi.read_bytes()
    for p in [*svgs, midi]:
        p.unlink()
    return pages, data, read_table(table)


def engrave_lilypond(
    source: str | Path, looks: list[LilyLook], title: str = "", composer: str = ""
) -> list[Engraving]:
    """Engrave one score with LilyPond in each look (the score converted once)."""
    if not looks:
        raise ValueError("no looks to engrave")
    path = resolve_source(source)
    out: list[Engraving] = []
    with tempfile.TemporaryDirectory(prefix="scoreid-ly-") as d:
        tmp = Path(d)
        ly = to_lilypond(path, tmp)
        if not title:
            m = re.search(r'title\s*=\s*"([^"]*)"', ly)
            title = m.group(1) if m else path.stem
        if not composer:
            m = re.search(r'composer\s*=\s*"([^"]*)"', ly)
            composer = m.group(1) if m else ""
        breaks = ""  # the line breaks the last look needed
        for look in looks:
            eng, breaks = _engraving_on_page(path, ly, look, tmp, title, composer, breaks)
            out.append(eng)
    return out


def _engraving_on_page(
    path: Path, ly: str, look: LilyLook, tmp: Path, title: str, composer: str, breaks: str = ""
) -> tuple[Engraving, str]:
    """:func:`_engraving` with line breaks ``breaks`` or, while its music runs off the page, with
    the next freer ones of :data:`BREAKS`; returns the engraving and the breaks it took."""
    for free in BREAKS[BREAKS.index(breaks) : -1]:
        try:
            return _engraving(path, ly, look, tmp, title, composer, free), free
        except OffPageError:
            pass  # set again, with more places to break the lines at
    return _engraving(path, ly, look, tmp, title, composer, BREAKS[-1]), BREAKS[-1]


def _engraving(
    path: Path, ly: str, look: LilyLook, tmp: Path, title: str, composer: str, breaks: str = ""
) -> Engraving:
    svgs, midi, table = _run_lilypond(ly, look, tmp, breaks)
    midi_ons, tpq = read_midi_ticks(midi)
    if not midi_ons:
        raise EngraveError(f"{path}: the score has no sounding notes")
    notes_of: dict[int, list[_MidiOn]] = {}
    for n in midi_ons:
        notes_of.setdefault(n.pitch, []).append(n)
    by_pitch = {p: (np.array([n.tick for n in ns]), ns) for p, ns in notes_of.items()}
    shift = midi_shift(table, by_pitch, tpq)
    parsed = [parse_lily_svg(s) for s in svgs]
    space_units, px_per_unit = render_scale([pg.spaces for pg in parsed], path)
    pages: list[np.ndarray] = []
    systems: list[SystemBox] = []
    notes: list[Notehead] = []
    dropped: dict[str, int] = {}
    for pi, (svg, pg) in enumerate(zip(svgs, parsed, strict=True)):
        pages.append(rasterise_svg(svg, zoom=px_per_unit * pg.width_units / _outer_width_px(svg)))
        index: dict[str, int] = {}
        for key, (top, bottom, left, right) in sorted(pg.systems.items(), key=lambda kv: kv[1][0]):
            index[key] = len(systems)
            systems.append(
                SystemBox(
                    pi, top * px_per_unit, bottom * px_per_unit, left * px_per_unit, right * px_per_unit
                )
            )
        for nid, skey, x, y, w, h in pg.notes:
            info = table.get(nid)
            if info is None or info[2] < 0:
                dropped["no_onset"] = dropped.get("no_onset", 0) + 1
                continue
            moment, grace, pitch = info
            if skey not in index:
                dropped["no_system"] = dropped.get("no_system", 0) + 1
                continue
            k = _note_on(by_pitch.get(pitch), float(moment * 4 * tpq + shift), float(grace * 4 * tpq))
            if k is None:
                why = "grace" if grace != 0 else "tie"  # a continuation (or a note LilyPond did not play)
                dropped[why] = dropped.get(why, 0) + 1
                continue
            ons = by_pitch[pitch]
            notes.append(
                Notehead(
                    nid,
                    pi,
                    index[skey],
                    x * px_per_unit,
                    y * px_per_unit,
                    w * px_per_unit,
                    h * px_per_unit,
                    ons[1][k].onset_s,
                    pitch,
                    float((moment + grace) * 4),
                )
            )
    if not notes:
        raise EngraveError(f"{path}: no notehead could be aligned with an onset")
    off = sum(1 for n in notes if not 0.0 <= n.x <= pages[n.page].shape[1])
    if off > OFF_PAGE_MAX * len(notes):
        raise OffPageError(
            f"{path}: LilyPond set {off} of {len(notes)} note heads past the page's edge (lines it "
            f"could not break{f', breaks {breaks!r}' if breaks else ''})"
        )
    notes.sort(key=lambda n: (n.onset_s, n.pitch, n.id))
    midi_notes = [MidiNote(n.pitch, n.onset_s, n.offset_s, n.velocity) for n in midi_ons]
    return Engraving(
        pages, systems, notes, midi_notes, title, composer, EngraveOptions(), space_units, dropped
    )


def _note_on(ons: tuple[np.ndarray, list[_MidiOn]] | None, beat: float, grace: float) -> int | None:
    """Index of the note-on that sounds a note head at ``beat`` (ticks; within TICK_TOLERANCE), or for
    a grace note (``grace`` < 0: its written lead in ticks) the last note-on between its written
    place and the beat (LilyPond's MIDI shortens the lead)."""
    if ons is None:
        return None
    t = ons[0]
    if grace == 0:
        k = int(np.argmin(np.abs(t - beat)))
        return k if abs(t[k] - beat) <= TICK_TOLERANCE else None
    inside = np.flatnonzero((t >= beat + grace - TICK_TOLERANCE) & (t < beat))
    return int(inside[-1]) if len(inside) else None


def midi_shift(
    table: dict[str, tuple[Fraction, Fraction, int]],
    by_pitch: dict[int, tuple[np.ndarray, list[_MidiOn]]],
    tpq: int,
) -> int:
    """Ticks by which LilyPond's MIDI runs behind the score's moments: grace notes before the first
    beat push the whole file on (the grace is played before the music's time 0), so the most common
    offset of each note head's nearest note-on of its pitch (within a 16th) is taken; 0 usually."""
    deltas: dict[int, int] = {}
    for moment, grace, pitch in table.values():
        ons = by_pitch.get(pitch)
        if grace != 0 or ons is None:
            continue
        d = ons[0] - float(moment * 4 * tpq)
        k = int(np.argmin(np.abs(d)))
        if abs(d[k]) <= tpq // 4:
            deltas[int(round(d[k]))] = deltas.get(int(round(d[k])), 0) + 1
    return max(sorted(deltas), key=lambda x: deltas[x]) if deltas else 0


def _outer_width_px(svg: str) -> float:
    """The page width rsvg-convert renders at zoom 1 (LilyPond writes it in mm: 96 px per inch)."""
    m = re.search(r'<svg[^>]*\bwidth="([\d.]+)(mm|px)?"', svg)
    if not m:
        raise EngraveError("LilyPond SVG without a width")
    return float(m.group(1)) * (96.0 / 25.4 if m.group(2) == "mm" else 1.0)
