"""Demo material from the music21 corpus: a folder of engraved sheet pages per piece, and
synthesised performances under the held-out (``shifted``) conditions.

Used by ``scoreid demo`` and by the end-to-end identification tests. Keyboard works are engraved
as they are; four-part chorales are reduced to a piano score (soprano + alto on a treble staff,
tenor + bass on a bass staff) so every system is a grand staff. Pages are engraved with Verovio
(``synthesis.engrave``) in the Leland font (not a training font) and written as PNG files, i.e. the
library is then built from pixels like any user's pages.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from synthesis.engrave import EngraveOptions, MidiNote, engrave, resolve_source
from synthesis.grand_staff import grand_staff
from synthesis.perform import Performance, PerformOptions, perform

KEYBOARD = (
    "joplin/maple_leaf_rag",
    "chopin/mazurka06-2",
    "schoenberg/opus19/movement2",
    "schoenberg/opus19/movement6",
    "cpebach/h186",
    "schumann_clara/polonaise_op1n1",
    "schumann_clara/polonaise_op1n2",
    "schumann_clara/polonaise_op1n3",
    "schumann_clara/polonaise_op1n4",
)
CHORALES = tuple(
    f"bach/{b}"
    for b in (
        "bwv7.7",
        "bwv70.7",
        "bwv72.6",
        "bwv73.5",
        "bwv74.8",
        "bwv77.6",
        "bwv78.7",
        "bwv66.6",
        "bwv26.6",
        "bwv32.6",
        "bwv40.8",
        "bwv44.7",
        "bwv48.7",
        "bwv57.8",
        "bwv60.5",
        "bwv64.8",
        "bwv65.7",
        "bwv67.7",
        "bwv69.6",
        "bwv80.8",
        "bwv84.5",
    )
)
DEMO_PIECES = KEYBOARD + CHORALES
DEMO_FONT = "Leland"
#: the held-out performance conditions: soundfont, tempo outside training's 0.9-1.1, room, noise
SHIFTED = dict(soundfont="csound", tempo_curve=0.08, reverb_rt60=0.6, snr_db=30.0, pedal=True)


def piece_id(source: str) -> str:
    return source.replace("/", "-").replace("_", "-").replace(".", "-")


def piano_score_file(source: str, tmp: Path) -> Path:
    """The score file to engrave: four-part chorales reduced to a grand staff (MusicXML)."""
    import music21

    path = resolve_source(source)
    score = music21.converter.parse(str(path))
    parts = list(getattr(score, "parts", []))
    if len(parts) != 4:
        return path
    piano = grand_staff(parts[:2], parts[2:], score.metadata.title if score.metadata else source)
    out = tmp / (piece_id(source) + ".musicxml")
    piano.write("musicxml", out)
    return out


def engrave_piece(source: str, folder: Path, font: str = DEMO_FONT) -> list[MidiNote]:
    """Engrave ``source`` into ``folder`` (page PNGs + piece.json); returns its notes (score time)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scoreid-demo-") as tmp:
        eng = engrave(piano_score_file(source, Path(tmp)), EngraveOptions(font=font))
    for i, page in enumerate(eng.pages):
        # upscale 2x: like a 150-200 dpi scan rather than the contract's own render scale
        im = Image.fromarray(page)
        im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC).save(
            folder / f"page{i + 1:02d}.png"
        )
    notes = [
        {"pitch": n.pitch, "on": n.onset_s, "off": n.offset_s, "vel": n.velocity} for n in eng.midi_notes
    ]
    (folder / "piece.json").write_text(
        json.dumps({"title": eng.title or source, "composer": eng.composer, "source": source, "notes": notes})
    )
    return eng.midi_notes


def notes_of(folder: Path) -> list[MidiNote]:
    d = json.loads((folder / "piece.json").read_text())
    return [MidiNote(n["pitch"], n["on"], n["off"], n["vel"]) for n in d["notes"]]


def shifted_performance(notes: list[MidiNote], tempo_factor: float = 1.25, seed: int = 0) -> Performance:
    """A performance under held-out conditions (csound soundfont, tempo curve, room, noise)."""
    return perform(notes, PerformOptions(tempo_factor=tempo_factor, seed=seed, **SHIFTED))  # type: ignore[arg-type]


def excerpt(audio: np.ndarray, start_s: float, seconds: float, sr: int) -> np.ndarray:
    a = int(start_s * sr)
    return audio[a : a + int(seconds * sr)]
