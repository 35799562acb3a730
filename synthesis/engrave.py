"""Engraving symbolic scores with Verovio: grey pages, staff systems and aligned noteheads.

``engrave(source, options)`` loads a score (Humdrum ``.krn``, MusicXML ``.musicxml``/``.xml``/
``.mxl``, MEI ``.mei``, or a music21 corpus name such as ``"bach/bwv66.6"``; files Verovio cannot
load are converted to MusicXML with music21 first), renders every page to SVG with the music font
and page size of ``options``, rasterises the pages with ``rsvg-convert`` at the contract's render
scale (staff-line spacing = ``contract.STAFF_SPACE_PX``) and returns:

- ``pages``: grey uint8 pages (white 255, ink 0),
- ``systems``: one box per staff system, the union of its staff-line paths, in page px,
- ``notes``: every *sounding* notehead (its SVG bounding box, the notehead glyph) with its onset
  in score time from Verovio's timemap and its MIDI pitch,
- ``midi_notes``: the notes of Verovio's MIDI rendering (pitch, onset, offset in score seconds).

A notehead is kept only if a MIDI note-on of the same pitch starts at its timemap onset (±5 ms):
tie continuations (no note-on) drop out, and so does any note whose id occurs more than once in
the timemap (repeats are not expanded: the score is performed and aligned straight through, so
each notehead has exactly one onset and no notehead is ever aligned with a wrong one). Grace notes
are kept when Verovio gives them a note-on of their own, otherwise dropped.

``LoadedScore(source, options, transpose=n)`` transposes the score by ``n`` semitones before
anything is engraved or performed (Verovio's ``transpose`` option), spelled in a key of at most
seven accidentals: the target tonic is the original key's tonic moved ``n`` semitones, named from
:data:`TONIC_NAMES` (each pitch class once, spelled so that both its major and its minor key
signature exist), and Verovio moves every staff, key signature and accidental with it. A score
without a key signature moves by the plain interval.

Note ids are deterministic (Verovio ``xmlIdSeed``). Verovio can crash the whole process on some
files: callers that must survive that (the corpus builder) call it in a worker subprocess.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from scoreid import contract as C
from scoreid.errors import UserError

#: Score files Verovio loads directly.
VEROVIO_SUFFIXES = (".krn", ".musicxml", ".xml", ".mxl", ".mei")
#: Other files we convert with music21 first.
MUSIC21_SUFFIXES = (".abc", ".mid", ".midi", ".rntxt", ".capx", ".md")
FONTS = ("Leipzig", "Bravura", "Gootville", "Leland", "Petaluma")

SVG_NS = "{http://www.w3.org/2000/svg}"
#: tonic names by pitch class (0 = C): the spelling whose major and minor keys both have <= 7 accidentals
TONIC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_PITCH_CLASS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ACCID = {"s": 1, "f": -1, "n": 0, "ss": 2, "x": 2, "ff": -2}
ONSET_TOLERANCE_MS = 5.0


class EngraveError(UserError):
    """A score that cannot be engraved (unreadable, empty, not music); the message says why."""


@dataclass(frozen=True)
class EngraveOptions:
    """One engraving "look". Page sizes in Verovio units (tenths of a millimetre)."""

    font: str = "Leipzig"
    page_width: int = 2100
    page_height: int = 2970
    margin: int = 50  #: page margins, Verovio units
    spacing_linear: float = 0.25
    spacing_non_linear: float = 0.6
    id_seed: int = 1

    def verovio(self) -> dict[str, object]:
        if self.font not in FONTS:
            raise EngraveError(f"unknown music font {self.font!r}; known: {', '.join(FONTS)}")
        return {
            "font": self.font,
            "pageWidth": self.page_width,
            "pageHeight": self.page_height,
            "pageMarginLeft": self.margin,
            "pageMarginRight": self.margin,
            "pageMarginTop": self.margin,
            "pageMarginBottom": self.margin,
            "scale": 100,
            "adjustPageHeight": False,
            "breaks": "auto",
            "svgBoundingBoxes": True,
            "xmlIdSeed": self.id_seed,
            "spacingLinear": self.spacing_linear,
            "spacingNonLinear": self.spacing_non_linear,
            "header": "none",
            "footer": "none",
        }


@dataclass
class SystemBox:
    page: int
    top: float
    bottom: float
    left: float
    right: float


@dataclass
class Notehead:
    id: str
    page: int
    system: int  #: index into Engraving.systems (global over pages)
    x: float  #: centre of the notehead box, page px
    y: float
    w: float
    h: float
    onset_s: float  #: score time
    pitch: int
    quarters: float = float("nan")  #: musical position (quarter notes from the start; repeats not unfolded)


@dataclass
class MidiNote:
    pitch: int
    onset_s: float
    offset_s: float
    velocity: int = 90


@dataclass
class Engraving:
    pages: list[np.ndarray]
    systems: list[SystemBox]
    notes: list[Notehead]
    midi_notes: list[MidiNote]
    title: str = ""
    composer: str = ""
    options: EngraveOptions = field(default_factory=EngraveOptions)
    staff_space_units: float = 180.0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max((n.offset_s for n in self.midi_notes), default=0.0)


# --------------------------------------------------------------------------- loading
def music21_corpus_path(name: str) -> Path | None:
    """The file of a music21 corpus work (``"bach/bwv66.6"``), or None if there is none."""
    from music21 import corpus

    try:
        found: object = corpus.getWork(name)
    except Exception:
        return None
    if isinstance(found, list):
        found = found[0] if found else None
    return Path(str(found)) if found else None


def resolve_source(source: str | Path) -> Path:
    """A score file path, from a path or a music21 corpus name."""
    p = Path(source)
    if p.exists():
        return p
    m = music21_corpus_path(str(source))
    if m is None:
        raise EngraveError(f"{source}: no such file and not a music21 corpus work")
    return m


def _to_musicxml(path: Path) -> str:
    import music21

    try:
        s: Any = music21.converter.parse(str(path))
        if isinstance(s, music21.stream.Opus):
            s = s.scores[0] if len(s.scores) else None
        if s is None:
            raise EngraveError(f"{path}: music21 found no score in the file")
        exporter = music21.musicxml.m21ToXml.GeneralObjectExporter(s)
        return exporter.parse().decode("utf-8")
    except EngraveError:
        raise
    except Exception as e:  # music21 raises many types for bad files
        raise EngraveError(f"{path}: not readable as music ({type(e).__name__}: {str(e)[:120]})") from e


def _load(tk: object, path: Path) -> None:
    if not path.is_file():
        raise EngraveError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise EngraveError(f"{path}: empty file")
    suffix = path.suffix.lower()
    ok = False
    if suffix in VEROVIO_SUFFIXES:
        if suffix == ".mxl":
            ok = tk.loadZipDataBase64(base64.b64encode(path.read_bytes()).decode())  # type: ignore[attr-defined]
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                text = path.read_text(encoding="latin-1")
            if not text.strip():
                raise EngraveError(f"{path}: empty file")
            ok = tk.loadData(text)  # type: ignore[attr-defined]
    if not ok:
        if suffix not in VEROVIO_SUFFIXES + MUSIC21_SUFFIXES:
            raise EngraveError(f"{path}: not a score file (supported: {', '.join(VEROVIO_SUFFIXES)})")
        ok = tk.loadData(_to_musicxml(path))  # type: ignore[attr-defined]
    if not ok or tk.getPageCount() < 1:  # type: ignore[attr-defined]
        raise EngraveError(f"{path}: Verovio could not read it as music")


def tonic_pitch_class(mei: str) -> int | None:
    """Pitch class (0 = C) of the first key signature's tonic in an MEI text, or None without one."""
    for tag in re.findall(r"<(?:keySig|scoreDef|staffDef)\b[^>]*>", mei):
        attrs = dict(re.findall(r'([\w.:]+)="([^"]*)"', tag))
        pname = attrs.get("pname") or attrs.get("key.pname")
        if pname and pname.lower() in _PITCH_CLASS:
            accid = attrs.get("accid") or attrs.get("key.accid") or "n"
            return (_PITCH_CLASS[pname.lower()] + _ACCID.get(accid, 0)) % 12
        sig = re.fullmatch(r"(\d)([sf])|0", attrs.get("sig") or attrs.get("key.sig") or "")
        if sig:  # no tonic written: the signature's major (or relative minor) tonic
            fifths = 0 if sig.group(0) == "0" else int(sig.group(1)) * (1 if sig.group(2) == "s" else -1)
            minor = (attrs.get("mode") or attrs.get("key.mode")) == "minor"
            return (7 * fifths + (9 if minor else 0)) % 12
    return None


def transpose_option(mei: str, semitones: int) -> str:
    """Verovio's ``transpose`` value that moves a score (its MEI) by ``semitones``: the target tonic
    (see the module docstring), or the plain interval (``"+3"``) for a score without a key."""
    if not -6 <= semitones <= 6:
        raise EngraveError(f"transpose by {semitones} semitones: at most 6 either way")
    pc = tonic_pitch_class(mei)
    if pc is None:
        return f"{semitones:+d}"
    return TONIC_NAMES[(pc + semitones) % 12]


def _metadata(path: Path, mei: str) -> tuple[str, str]:
    title = composer = ""
    if path.suffix.lower() == ".krn":
        head = path.read_text(encoding="utf-8", errors="replace")[:20000]
        refs = dict(re.findall(r"^!!!([A-Z]{3})[^:]*:\s*(.*)$", head, re.M))
        title = refs.get("OTL", "")
        composer = refs.get("COM", "")
    if not title:
        m = re.search(r"<title[^>]*>([^<]+)</title>", mei)
        title = m.group(1).strip() if m else ""
    if not composer:
        m = re.search(r'<persName[^>]*role="composer"[^>]*>([^<]+)<', mei)
        composer = m.group(1).strip() if m else ""
    return title or path.stem, composer


# --------------------------------------------------------------------------- SVG parsing
def _classes(el: ET.Element) -> set[str]:
    """The class tokens of an element; Verovio's bounding-box helper groups count as none."""
    cls = set((el.get("class") or "").split())
    return set() if "bounding-box" in cls else cls


def _path_points(d: str) -> list[tuple[float, float]]:
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return list(zip(nums[0::2], nums[1::2], strict=False))


@dataclass
class _PageSvg:
    width_units: float
    height_units: float
    origin: tuple[float, float]
    systems: list[tuple[float, float, float, float]]  # top, bottom, left, right (units)
    staff_spaces: list[float]
    notes: list[tuple[str, int, float, float, float, float]]  # id, system-on-page, x, y, w, h (units)


def parse_page_svg(svg: str) -> _PageSvg:
    """Staff-system boxes (union of staff lines) and note bounding boxes of one Verovio SVG page."""
    root = ET.fromstring(svg)
    inner = next(el for el in root.iter(SVG_NS + "svg") if "definition-scale" in _classes(el))
    vb = [float(v) for v in (inner.get("viewBox") or "0 0 0 0").split()]
    origin = (0.0, 0.0)
    for g in inner.iter(SVG_NS + "g"):
        if "page-margin" in _classes(g):
            m = re.match(r"translate\(([-\d.]+),\s*([-\d.]+)\)", g.get("transform") or "")
            if m:
                origin = (float(m.group(1)), float(m.group(2)))
            break
    systems: list[tuple[float, float, float, float]] = []
    spaces: list[float] = []
    notes: list[tuple[str, int, float, float, float, float]] = []
    for sysg in inner.iter(SVG_NS + "g"):
        if "system" not in _classes(sysg):
            continue
        si = len(systems)
        xs: list[float] = []
        ys: list[float] = []
        for staff in sysg.iter(SVG_NS + "g"):
            if "staff" not in _classes(staff):
                continue
            line_ys = []
            for p in staff.findall(SVG_NS + "path"):  # direct children: the staff lines
                pts = _path_points(p.get("d") or "")
                if len(pts) == 2 and abs(pts[0][1] - pts[1][1]) < 1e-6:
                    xs += [pts[0][0], pts[1][0]]
                    ys.append(pts[0][1])
                    line_ys.append(pts[0][1])
            if len(line_ys) >= 2:
                spaces.extend(np.diff(sorted(line_ys)).tolist())
        for ng in sysg.iter(SVG_NS + "g"):
            if "note" not in _classes(ng) or not ng.get("id"):
                continue
            nid = ng.get("id") or ""
            bbox = next((b for b in ng.findall(SVG_NS + "g") if b.get("id") == f"bbox-{nid}"), None)
            rect = bbox.find(SVG_NS + "rect") if bbox is not None else None
            if rect is None:
                continue
            x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
            w, h = float(rect.get("width", 0)), float(rect.get("height", 0))
            if w <= 0 or h <= 0:
                continue
            notes.append((nid, si, x + w / 2, y + h / 2, w, h))
        if xs:
            systems.append((min(ys), max(ys), min(xs), max(xs)))
        else:  # a system without staff lines (should not happen); keep indices consistent
            systems.append((float("nan"),) * 4)
    return _PageSvg(vb[2], vb[3], origin, systems, spaces, notes)


def render_scale(spaces: list[list[float]], path: Path) -> tuple[float, float]:
    """(staff space in SVG units, page px per unit) from every page's staff-line gaps: the median
    gap is drawn ``contract.STAFF_SPACE_PX`` px high."""
    gaps = [s for page in spaces for s in page if s > 0]
    if not gaps:
        raise EngraveError(f"{path}: engraving has no staves")
    units = float(np.median(gaps))
    return units, C.STAFF_SPACE_PX / units


# --------------------------------------------------------------------------- rasterising
def rasterise_svg(svg: str, zoom: float) -> np.ndarray:
    """SVG text -> grey uint8 image with ``rsvg-convert`` (white background)."""
    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise EngraveError("rsvg-convert not found; install the Debian package librsvg2-bin")
    res = subprocess.run(
        [exe, "-z", f"{zoom:.8f}", "-b", "white", "-f", "png"],
        input=svg.encode(),
        capture_output=True,
        timeout=300,
    )
    if res.returncode != 0:
        raise EngraveError(f"rsvg-convert failed: {res.stderr.decode(errors='replace').strip()[:200]}")
    return np.asarray(Image.open(io.BytesIO(res.stdout)).convert("L"), dtype=np.uint8)


# --------------------------------------------------------------------------- MIDI
def parse_midi(data: bytes) -> list[MidiNote]:
    """Notes (pitch, onset, offset, velocity) of a Standard MIDI File, in seconds."""
    import mido

    mf = mido.MidiFile(file=io.BytesIO(data))
    t = 0.0
    open_: dict[tuple[int, int], list[tuple[float, int]]] = {}
    out: list[MidiNote] = []
    for msg in mf:
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_.setdefault((msg.channel, msg.note), []).append((t, msg.velocity))
        elif msg.type in ("note_off", "note_on"):
            stack = open_.get((msg.channel, msg.note))
            if stack:
                on, vel = stack.pop(0)
                out.append(MidiNote(msg.note, on, max(t, on + 0.01), vel))
    for (_, pitch), stack in open_.items():
        for on, vel in stack:
            out.append(MidiNote(pitch, on, max(t, on + 0.1), vel))
    out.sort(key=lambda n: (n.onset_s, n.pitch, n.offset_s))
    return out


# --------------------------------------------------------------------------- engraving
class LoadedScore:
    """A score loaded into Verovio once: its timing (timemap, MIDI) and metadata, rendered per look.

    Loading dominates Verovio's cost, so several looks of one piece share one load
    (``render(options)`` changes the font / page size and redoes the layout). Note ids, onsets and
    MIDI do not depend on the look.
    """

    def __init__(self, source: str | Path, options: EngraveOptions | None = None, transpose: int = 0):
        import verovio

        self.path = resolve_source(source)
        if hasattr(verovio, "enableLog"):
            verovio.enableLog(verovio.LOG_OFF)
        self.tk = verovio.toolkit()
        self.tk.setOptions((options or EngraveOptions()).verovio())
        _load(self.tk, self.path)
        self.transpose = transpose
        if transpose:  # read the key untransposed, then load again moved to the target tonic
            target = transpose_option(self.tk.getMEI(), transpose)
            self.tk = verovio.toolkit()
            self.tk.setOptions({**(options or EngraveOptions()).verovio(), "transpose": target})
            _load(self.tk, self.path)
        self._loaded_options = options or EngraveOptions()
        mei = self.tk.getMEI()
        self.title, self.composer = _metadata(self.path, mei)
        timemap = self.tk.renderToTimemap()
        self.counts = Counter(i for ev in timemap for i in ev.get("on", []))
        self.onset_ms: dict[str, float] = {}
        self.quarters: dict[str, float] = {}
        for ev in timemap:
            for nid in ev.get("on", []):
                if self.counts[nid] == 1:
                    self.onset_ms[nid] = float(ev["tstamp"])
                    self.quarters[nid] = float(ev.get("qstamp", float("nan")))
        self.midi_notes = parse_midi(base64.b64decode(self.tk.renderToMIDI()))
        if not self.midi_notes:
            raise EngraveError(f"{self.path}: the score has no sounding notes")
        self.tie_ends = set(re.findall(r'<tie\b[^>]*endid="#([^"]+)"', mei))
        self.tie_ends |= set(re.findall(r'<note\b[^>]*xml:id="([^"]+)"[^>]*\btie="[mt]"', mei))
        self.on_index: dict[int, np.ndarray] = {}
        for pitch in {n.pitch for n in self.midi_notes}:
            self.on_index[pitch] = np.array([n.onset_s * 1000 for n in self.midi_notes if n.pitch == pitch])
        self._pitch: dict[str, int] = {}

    def pitch_of(self, nid: str) -> int:
        if nid not in self._pitch:
            try:
                self._pitch[nid] = int(self.tk.getMIDIValuesForElement(nid).get("pitch", -1))
            except Exception:
                self._pitch[nid] = -1
        return self._pitch[nid]

    def render(self, options: EngraveOptions | None = None) -> Engraving:
        """Pages, systems and aligned noteheads of one look."""
        options = options or self._loaded_options
        if options != self._loaded_options:
            self.tk.setOptions(options.verovio())
            self.tk.redoLayout()
            self._loaded_options = options
        tk, path = self.tk, self.path
        pages: list[np.ndarray] = []
        systems: list[SystemBox] = []
        notes: list[Notehead] = []
        dropped: Counter[str] = Counter(repeated=sum(1 for c in self.counts.values() if c > 1))
        svgs = [tk.renderToSVG(p) for p in range(1, tk.getPageCount() + 1)]
        parsed = [parse_page_svg(s) for s in svgs]
        space_units, px_per_unit = render_scale([pg.staff_spaces for pg in parsed], path)
        for pi, (svg, pg) in enumerate(zip(svgs, parsed, strict=True)):
            pages.append(rasterise_svg(svg, zoom=px_per_unit * pg.width_units / _outer_width_px(svg)))
            ox, oy = pg.origin
            base = len(systems)
            for top, bottom, left, right in pg.systems:
                systems.append(
                    SystemBox(
                        pi,
                        (top + oy) * px_per_unit,
                        (bottom + oy) * px_per_unit,
                        (left + ox) * px_per_unit,
                        (right + ox) * px_per_unit,
                    )
                )
            for nid, si, x, y, w, h in pg.notes:
                if nid in self.tie_ends:
                    dropped["tie"] += 1
                    continue
                if nid not in self.onset_ms:
                    dropped["no_onset"] += 1
                    continue
                ons = self.on_index.get(self.pitch_of(nid))
                if ons is None or np.min(np.abs(ons - self.onset_ms[nid])) > ONSET_TOLERANCE_MS:
                    dropped["no_note_on"] += 1
                    continue
                if np.isnan(systems[base + si].top):
                    dropped["no_system"] += 1
                    continue
                notes.append(
                    Notehead(
                        nid,
                        pi,
                        base + si,
                        (x + ox) * px_per_unit,
                        (y + oy) * px_per_unit,
                        w * px_per_unit,
                        h * px_per_unit,
                        self.onset_ms[nid] / 1000.0,
                        self.pitch_of(nid),
                        self.quarters[nid],
                    )
                )
        if not notes:
            raise EngraveError(f"{path}: no notehead could be aligned with an onset")
        notes.sort(key=lambda n: (n.onset_s, n.pitch, n.id))
        return Engraving(
            pages,
            systems,
            notes,
            list(self.midi_notes),
            self.title,
            self.composer,
            options,
            space_units,
            dict(dropped),
        )


def engrave(source: str | Path, options: EngraveOptions | None = None, transpose: int = 0) -> Engraving:
    """Engrave one score with one look (see the module docstring)."""
    return LoadedScore(source, options, transpose).render(options)


def engrave_looks(source: str | Path, looks: list[EngraveOptions], transpose: int = 0) -> list[Engraving]:
    """Engrave one score with several looks, loading it once (``transpose``: semitones)."""
    if not looks:
        raise ValueError("no looks to engrave")
    score = LoadedScore(source, looks[0], transpose)
    return [score.render(o) for o in looks]


def _outer_width_px(svg: str) -> float:
    m = re.search(r'<svg[^>]*\bwidth="([\d.]+)px"', svg)
    if not m:
        raise EngraveError("Verovio SVG without a width")
    return float(m.group(1))
