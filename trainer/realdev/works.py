"""The works and performances of the real-performance set (ASAP layout, ``../shared/real-dev``).

A work folder is any folder holding ``xml_score.musicxml`` (e.g. ``Haydn/Keyboard_Sonatas/31-1``);
its performances are the ``<performer>.mid`` files beside it (not ``midi_score.mid``), each with
``<performer>_annotations.txt`` (beats: time, time, label per line). Work ids are derived from the
folder path (``haydn.keyboard-sonatas.31-1``), so they are stable and readable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scoreid.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REALDEV = ROOT.parent / "shared" / "real-dev"
SCORE_FILE = "xml_score.musicxml"
SCORE_MIDI = "midi_score.mid"
ANNOTATIONS_SUFFIX = "_annotations.txt"


@dataclass(frozen=True)
class PerformanceFile:
    performer: str
    midi: Path
    annotations: Path | None


@dataclass(frozen=True)
class Work:
    folder: str  #: path relative to the real-dev root, e.g. "Haydn/Keyboard_Sonatas/31-1"
    path: Path
    performances: tuple[PerformanceFile, ...]

    @property
    def id(self) -> str:
        return work_id(self.folder)

    @property
    def score(self) -> Path:
        return self.path / SCORE_FILE

    @property
    def composer(self) -> str:
        return self.folder.split("/")[0]

    @property
    def title(self) -> str:
        """A readable title from the folder: "Keyboard Sonatas 31-1", "Fantasie 475"."""
        parts = self.folder.split("/")[1:]
        return " ".join(p.replace("_", " ") for p in parts)


def work_id(folder: str) -> str:
    """``"Haydn/Keyboard_Sonatas/32-1_no_repeat"`` -> ``"haydn.keyboard-sonatas.32-1-no-repeat"``."""
    parts = [re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in folder.split("/")]
    return ".".join(p for p in parts if p)


def performances_in(folder: Path) -> tuple[PerformanceFile, ...]:
    out = []
    for mid in sorted(folder.glob("*.mid")):
        if mid.name == SCORE_MIDI:
            continue
        ann = folder / f"{mid.stem}{ANNOTATIONS_SUFFIX}"
        out.append(PerformanceFile(mid.stem, mid, ann if ann.is_file() else None))
    return tuple(out)


def find_works(root: Path = DEFAULT_REALDEV) -> list[Work]:
    """Every work folder under ``root``, sorted by folder path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no real-dev folder")
    works = []
    for score in sorted(root.rglob(SCORE_FILE)):
        folder = score.parent
        works.append(Work(folder.relative_to(root).as_posix(), folder, performances_in(folder)))
    if not works:
        raise UserError(f"{root}: no work folders (no {SCORE_FILE} found)")
    return works


def item_rng(seed: int, name: str) -> np.random.Generator:
    """An RNG of its own for one named item (a work's pages, a performance's room, an excerpt):
    the same ``seed`` and ``name`` give the same draws whatever else is built, in whatever order."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
