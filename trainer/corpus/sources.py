"""Finding the scores to build from: folders of score files and the music21 corpus.

A source is a folder (searched recursively for score files), a single score file, or a music21
corpus pattern ``music21:GLOB`` matched against paths inside the music21 corpus (for example
``music21:bach/bwv*`` or ``music21:beethoven/opus18*``). Each score becomes a :class:`SourceItem`
with a deterministic piece id, a composer guess, a licence line and "work keys" (normalised
composer + file name, composer + title) used to keep near-duplicates of one work together.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from scoreid.errors import UserError
from synthesis.engrave import MUSIC21_SUFFIXES, VEROVIO_SUFFIXES

SCORE_SUFFIXES = VEROVIO_SUFFIXES + (".abc",)
MUSIC21_PREFIX = "music21:"
MUSIC21_LICENCE = "music21 corpus (BSD-licensed toolkit; scores public domain or as noted in the file)"


@dataclass
class SourceItem:
    pid: str
    path: Path
    source: str  #: the source tag (folder name or "music21")
    composer: str
    licence: str
    keys: list[str] = field(default_factory=list)
    transpose: int = 0  #: semitones the score is moved before it is built (a transposed copy)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")


def krn_title(path: Path) -> tuple[str, str]:
    """(title, composer) from a Humdrum file's reference records (cheap; no parsing)."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:8000]
    except OSError:
        return "", ""
    refs = dict(re.findall(r"^!!!([A-Z]{3})[^:]*:\s*(.*)$", head, re.M))
    return refs.get("OTL", ""), refs.get("COM", "")


def work_keys(composer: str, stem: str, title: str = "") -> list[str]:
    """Keys that identify a work across encodings: composer surname + file stem / title.

    The file stem also counts as a title (music21's ``joplin/maple_leaf_rag.mxl`` has no title
    record we can read cheaply; it meets ``joplin/mapleleaf.krn`` through the latter's title
    "Maple Leaf Rag").
    """
    surname = _norm(re.split(r"[,\s]", composer.strip())[0]) if composer.strip() else ""
    keys = [f"{surname}:{_norm(stem)}", f"{surname}:t:{_norm(stem)}"]
    if title and f"{surname}:t:{_norm(title)}" not in keys:
        keys.append(f"{surname}:t:{_norm(title)}")
    return keys


def _licence_for(folder: Path) -> str:
    lic = folder / "LICENSE.txt"
    if lic.is_file():
        text = lic.read_text(errors="replace")
        m = re.search(r"(CC[- ]BY[-A-Z ]*\d\.\d|Creative Commons[^\n]*)", text)
        return f"{m.group(1).strip() if m else 'see LICENSE.txt'} ({folder.name})"
    return f"CC BY-NC-SA 4.0 (Craig Stuart Sapp, {folder.name}; see the file's !!!YEM record)"


def folder_items(folder: Path) -> list[SourceItem]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name != "LICENSE.txt"
        and not p.name.startswith(".")
        and p.suffix.lower() not in (".md", ".txt")
    )
    tag = _safe(folder.name)
    licence = _licence_for(folder)
    default_composer = folder.name.split("-")[0]
    out = []
    for f in files:
        rel = f.relative_to(folder).with_suffix("")
        title, composer = krn_title(f) if f.suffix.lower() == ".krn" else ("", "")
        composer = composer or default_composer
        out.append(
            SourceItem(
                f"{tag}.{_safe(str(rel).replace('/', '.'))}",
                f,
                tag,
                composer,
                licence,
                work_keys(composer, f.stem, title),
            )
        )
    return out


def music21_items(pattern: str) -> list[SourceItem]:
    from music21 import corpus

    out = []
    for p in sorted(str(x) for x in corpus.getPaths()):
        rel = p.split("/corpus/", 1)[1] if "/corpus/" in p else Path(p).name
        if not fnmatch.fnmatch(rel, pattern) and not fnmatch.fnmatch(rel.rsplit(".", 1)[0], pattern):
            continue
        path = Path(p)
        if path.suffix.lower() not in SCORE_SUFFIXES + MUSIC21_SUFFIXES:
            continue
        composer = rel.split("/")[0]
        title, com = krn_title(path) if path.suffix.lower() == ".krn" else ("", "")
        stem = rel.rsplit(".", 1)[0]
        out.append(
            SourceItem(
                f"m21.{_safe(stem.replace('/', '.'))}",
                path,
                f"music21-{composer}",
                com or composer,
                MUSIC21_LICENCE,
                work_keys(com or composer, path.stem, title),
            )
        )
    return out


def collect(sources: list[str]) -> list[SourceItem]:
    """All score items of the given sources, in a deterministic order, ids unique."""
    items: list[SourceItem] = []
    for s in sources:
        if s.startswith(MUSIC21_PREFIX):
            found = music21_items(s[len(MUSIC21_PREFIX) :])
        else:
            p = Path(s)
            if p.is_dir():
                found = folder_items(p)
            elif p.is_file():
                title, composer = krn_title(p) if p.suffix.lower() == ".krn" else ("", "")
                composer = composer or p.parent.name.split("-")[0]
                found = [
                    SourceItem(
                        f"{_safe(p.parent.name)}.{_safe(p.stem)}",
                        p,
                        _safe(p.parent.name),
                        composer,
                        _licence_for(p.parent),
                        work_keys(composer, p.stem, title),
                    )
                ]
            else:
                raise UserError(f"source {s!r}: no such folder or file (music21 corpus: music21:GLOB)")
        if not found:
            raise UserError(f"source {s!r}: no score files found")
        items.extend(found)
    seen: set[str] = set()
    unique = []
    for it in items:
        if it.pid not in seen:
            seen.add(it.pid)
            unique.append(it)
    return unique


def limit_round_robin(items: list[SourceItem], k: int) -> list[SourceItem]:
    """The first ``k`` items taking one from each source in turn (deterministic, varied)."""
    by_src: dict[str, list[SourceItem]] = {}
    for it in items:
        by_src.setdefault(it.source, []).append(it)
    out: list[SourceItem] = []
    queues = list(by_src.values())
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return out
