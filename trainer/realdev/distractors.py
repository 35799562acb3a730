"""Distractor pieces for a real-dev library of realistic size: pages only, in the real-dev look.

    python -m trainer.realdev.distractors [--out /work/data/realdev-distractors]
        [--corpora ../shared/corpora] [--music21 PATTERN ...] [--palestrina N] [--workers 2]
        [--seed 0] [--limit N] [--no-progress]

A user's library holds hundreds to thousands of pieces; the real-dev works alone make a library of
about a hundred. This builds the other pieces of a large dev library from everything the project may
engrave: every score of ``../shared/corpora`` and keyboard, chorale, madrigal and mass scores of the
music21 corpus (``DEFAULT_MUSIC21``; ``--palestrina N`` adds a seeded choice of N Palestrina mass
movements). Scores with more than two parts (chorales, quartets, madrigals) are reduced to a grand
staff (the upper half of the parts chordified on a treble staff, the lower half on a bass staff), so
every page looks like piano music. Pages are engraved and degraded exactly like the real-dev pages
(:func:`trainer.realdev.build.scanned`: Leland, upscaled, rotated, blurred, grey, grainy), so the
look does not tell a distractor from a real-dev work.

Never a real-dev work as a distractor of itself: a score whose notes match a real-dev work
(:func:`trainer.realdev.matches.similarity` ``>= THRESHOLD``, against the notes of every work folder
under ``--realdev``) is left out and listed with its score; so is every corpus piece the committed
matches file names. Scores that are one work in two encodings (the corpus's and music21's Maple
Leaf Rag; work keys of :mod:`trainer.corpus.sources`) are built once.

Layout under ``--out``::

    pieces/<pid>/p1.png …  piece.json     {"title", "composer", "source", "distractor": true}
    realdev-notes.json                    the real-dev works' pitch sequences (a cache)
    distractors.json                      built, left out (why), failed (why); how they were made

Deterministic (each piece's pages draw from an RNG named by its id and ``--seed``) and resumable (a
piece is done when its ``piece.json`` exists; it is written last). Each score is engraved in a forked
subprocess (Verovio can crash on a file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthesis.grand_staff import grand_staff
from trainer.corpus.sources import SourceItem, collect
from trainer.corpus.splits import group_by_keys
from trainer.corpus.store import atomic_write_bytes, png_bytes, write_json
from trainer.realdev.build import ENGRAVE_TIMEOUT_S, FONT, scanned
from trainer.realdev.isolated import IsolatedError, run_isolated
from trainer.realdev.matches import (
    DEFAULT_CORPORA,
    THRESHOLD,
    load_matches,
    matched_corpus_pids,
    read_notes,
    similarity,
)
from trainer.realdev.works import DEFAULT_REALDEV, find_works, item_rng

DEFAULT_DATA = Path("/work/data/realdev-distractors")
#: music21 corpus patterns: keyboard works, chorales, quartets, madrigals, early polyphony
DEFAULT_MUSIC21 = (
    "bach/*",
    "beethoven/*",
    "mozart/*",
    "haydn/*",
    "schumann*/*",
    "chopin/*",
    "joplin/*",
    "cpebach/*",
    "schoenberg/*",
    "handel/*",
    "corelli/*",
    "schubert/*",
    "weber/*",
    "verdi/*",
    "beach/*",
    "monteverdi/*",
    "josquin/*",
    "luca/*",
    "ciconia/*",
    "lusitano/*",
    "trecento/*",
)
PALESTRINA = "palestrina/*"
MAX_PARTS_AS_IS = 2  #: scores with more parts are reduced to a grand staff


# ------------------------------------------------------------------------------ which scores
def realdev_notes(realdev: Path, cache: Path) -> dict[str, list[int]]:
    """work folder -> its pitch sequence (read once, cached in ``cache``)."""
    have: dict[str, list[int]] = json.loads(cache.read_text()) if cache.is_file() else {}
    changed = False
    for w in find_works(realdev):
        if w.folder not in have:
            have[w.folder] = list(read_notes(w.score).pitches)
            changed = True
    if changed:
        write_json(cache, have)
    return have


def candidates(corpora: Path, music21: Sequence[str], palestrina: int, seed: int) -> list[SourceItem]:
    """Corpus scores, then music21's; one per work (work keys), in a deterministic order."""
    sources = [str(d) for d in sorted(corpora.iterdir()) if d.is_dir()]
    items = collect(sources + [f"music21:{p}" for p in music21])
    if palestrina > 0:
        pal = collect([f"music21:{PALESTRINA}"])
        pick = np.random.default_rng(seed).permutation(len(pal))[:palestrina]
        items += [pal[i] for i in sorted(pick)]
    # one work in two sources (the corpus's and music21's Maple Leaf Rag): the first source's copy;
    # within a source every file stays (the movements of a sonata share a title key)
    order = {it.pid: i for i, it in enumerate(items)}
    source = {it.pid: it.source for it in items}
    first_source: dict[str, str] = {}
    for g in group_by_keys({it.pid: it.keys for it in items}):
        for pid in g:
            first_source[pid] = source[min(g, key=lambda q: order[q])]
    return [it for it in items if first_source[it.pid] == it.source]


# ------------------------------------------------------------------------------ one piece
def grand_staff_file(path: Path, tmp: Path) -> Path:
    """``path`` itself when it has at most two parts; else a MusicXML grand-staff reduction."""
    import music21

    score: Any = music21.converter.parse(str(path))
    if isinstance(score, music21.stream.Opus):
        score = score.scores[0]
    parts = list(getattr(score, "parts", []))
    if len(parts) <= MAX_PARTS_AS_IS:
        return path
    half = (len(parts) + 1) // 2
    title = score.metadata.title if score.metadata and score.metadata.title else path.stem
    piano = grand_staff(parts[:half], parts[half:], title)
    out = tmp / "grand-staff.musicxml"
    piano.write("musicxml", out)
    return out


@dataclass(frozen=True)
class Built:
    pages: int
    title: str
    composer: str
    best_match: tuple[str, float]  #: the most similar real-dev work folder and its similarity


def build_piece(
    item: SourceItem, folder: Path, seed: int, works: dict[str, list[int]], threshold: float
) -> Built:
    """Engrave one score in the real-dev look into ``folder`` (unless it is a real-dev work)."""
    from synthesis.engrave import EngraveOptions, engrave

    with tempfile.TemporaryDirectory(prefix="scoreid-distractor-") as tmp:
        eng = engrave(grand_staff_file(item.path, Path(tmp)), EngraveOptions(font=FONT))
    pitches = [n.pitch for n in sorted(eng.midi_notes, key=lambda n: (n.onset_s, n.pitch))]
    best = max(((similarity(pitches, p), f) for f, p in works.items()), default=(0.0, ""))
    match = (best[1], round(best[0], 4))
    if best[0] >= threshold:
        return Built(0, "", "", match)
    rng = item_rng(seed, f"distractor-pages:{item.pid}")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("p*.png"):
        old.unlink()
    for i, page in enumerate(eng.pages):
        atomic_write_bytes(folder / f"p{i + 1}.png", png_bytes(scanned(page, rng)))
    title = eng.title or item.path.stem
    composer = item.composer or eng.composer
    write_json(
        folder / "piece.json",
        {
            "title": title,
            "composer": composer,
            "source": f"{item.source}:{item.path.name}",
            "distractor": True,
        },
    )
    return Built(len(eng.pages), title, composer, match)


# ------------------------------------------------------------------------------ the set
def build_distractors(
    out: Path,
    corpora: Path,
    realdev: Path,
    music21: Sequence[str],
    palestrina: int,
    seed: int,
    workers: int,
    limit: int | None,
    show: bool,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    works = realdev_notes(realdev, out / "realdev-notes.json")
    known_matches = matched_corpus_pids(load_matches())
    items = candidates(corpora, music21, palestrina, seed)
    if limit is not None:
        items = items[:limit]
    status_path = out / "status.json"
    status: dict[str, Any] = json.loads(status_path.read_text()) if status_path.is_file() else {}
    todo = [it for it in items if it.pid not in known_matches]
    t0 = time.time()
    done = [0]

    def one(it: SourceItem) -> tuple[str, dict[str, Any]]:
        folder = out / "pieces" / it.pid
        if (folder / "piece.json").is_file():
            meta = json.loads((folder / "piece.json").read_text())
            entry = status.get(it.pid) or {
                "built": True,
                "pages": len(list(folder.glob("p*.png"))),
                "title": meta["title"],
                "composer": meta["composer"],
            }
        elif it.pid in status and not status[it.pid].get("built"):
            entry = status[it.pid]  # left out or failed before: the same inputs give the same answer
        else:
            try:
                b = run_isolated(build_piece, it, folder, seed, works, THRESHOLD, timeout=ENGRAVE_TIMEOUT_S)
                entry = {
                    "built": b.pages > 0,
                    "pages": b.pages,
                    "title": b.title,
                    "composer": b.composer,
                    "best_realdev": list(b.best_match),
                }
                if not b.pages:
                    entry["why"] = f"the notes of real-dev {b.best_match[0]} ({b.best_match[1]:.2f})"
            except IsolatedError as e:
                entry = {"built": False, "why": f"failed: {e}"}
        entry["source"] = f"{it.source}:{it.path.name}"
        done[0] += 1
        if show:
            what = f"{entry['pages']} pages" if entry.get("built") else f"left out: {entry.get('why')}"
            print(
                f"distractors: {done[0]}/{len(todo)} {it.pid}: {what} ({time.time() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        return it.pid, entry

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for pid, entry in pool.map(one, todo):
            status[pid] = entry
    write_json(status_path, status)
    wanted = {it.pid for it in todo}
    built = {p: e for p, e in status.items() if e.get("built") and p in wanted}
    doc = {
        "version": 1,
        "seed": seed,
        "look": "the real-dev pages' (trainer.realdev.build.scanned, Verovio, font Leland)",
        "music21": list(music21),
        "palestrina": palestrina,
        "candidates": len(items),
        "built": sorted(built),
        "pages": sum(e["pages"] for e in built.values()),
        "left_out_known_realdev_matches": sorted(it.pid for it in items if it.pid in known_matches),
        "left_out": {p: e["why"] for p, e in sorted(status.items()) if not e.get("built")},
    }
    write_json(out / "distractors.json", doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_DATA)
    p.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    p.add_argument("--realdev", type=Path, default=DEFAULT_REALDEV)
    p.add_argument("--music21", action="append", default=None, help="music21 corpus pattern (repeatable)")
    p.add_argument("--palestrina", type=int, default=0, help="a seeded choice of N Palestrina movements")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N candidates (a quick run)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    t0 = time.time()
    doc = build_distractors(
        args.out,
        args.corpora.resolve(),
        args.realdev.resolve(),
        args.music21 or list(DEFAULT_MUSIC21),
        args.palestrina,
        args.seed,
        args.workers,
        args.limit,
        args.progress,
    )
    print(
        f"distractors: {len(doc['built'])} pieces ({doc['pages']} pages) of {doc['candidates']} candidates, "
        f"{len(doc['left_out'])} left out; {time.time() - t0:.0f} s; wrote {args.out / 'distractors.json'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
