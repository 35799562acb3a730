"""Which corpus pieces are the same works as the real-dev scores — found by their notes.

    python -m trainer.realdev.matches [--realdev ../shared/real-dev] [--corpora ../shared/corpora]
        [--source mozart-piano-sonatas --source haydn-piano-sonatas] [--out trainer/realdev/corpus_matches.json]

File names do not tell (ASAP's Haydn folders number the sonatas differently from the corpus files),
so every score is reduced to its notes: Verovio's MIDI rendering of the file (the same reader the
corpus build uses; repeats are not expanded), as MIDI pitches ordered by onset and, within a chord,
by pitch. Two scores are compared by pitch n-grams (``NGRAM`` consecutive notes): the share of the
n-grams of one score's first ``HEAD_NOTES`` notes that occur anywhere in the other, taken both ways
(so a corpus file holding one section of a real-dev movement, or the reverse, still matches). Equal
movements score near 1 (editions differ in ornaments, grace notes and ties); different works of the
same composer stay far below ``THRESHOLD``.

Verovio can crash the process on some files (one corpus file does), so each file is read in a
forked subprocess; a file Verovio cannot read is read with music21 instead. The output is
deterministic (no dates, sorted keys, rounded scores): running the command again rewrites the same
bytes. It lists every real-dev work folder with its matching corpus files (corpus piece id, file,
similarity), its best non-matching candidates, and the other real-dev folders holding the same work
(ASAP keeps a ``_no_repeat`` copy of some scores).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.corpus.sources import folder_items
from trainer.realdev.isolated import IsolatedError, run_isolated
from trainer.realdev.works import DEFAULT_REALDEV, ROOT, Work, find_works

NGRAM = 5
HEAD_NOTES = 400
THRESHOLD = 0.5
CANDIDATES = 3  #: best non-matching corpus files listed per work
READ_TIMEOUT_S = 300
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
DEFAULT_SOURCES = ("mozart-piano-sonatas", "haydn-piano-sonatas")
DEFAULT_OUT = Path(__file__).resolve().parent / "corpus_matches.json"

Pitches = tuple[int, ...]


# ------------------------------------------------------------------------------ similarity
def ngrams(pitches: Sequence[int], n: int = NGRAM) -> set[Pitches]:
    """The set of ``n`` consecutive pitches of a note sequence."""
    return {tuple(pitches[i : i + n]) for i in range(len(pitches) - n + 1)}


def containment(head: Sequence[int], whole: Sequence[int], n: int = NGRAM) -> float:
    """Share of the n-grams of ``head`` that occur in ``whole`` (0 when ``head`` has none)."""
    grams = ngrams(head, n)
    if not grams:
        return 0.0
    return len(grams & ngrams(whole, n)) / len(grams)


def similarity(a: Sequence[int], b: Sequence[int], head: int = HEAD_NOTES, n: int = NGRAM) -> float:
    """How much the beginning of either score occurs in the other, in 0..1 (symmetric)."""
    return max(containment(a[:head], b, n), containment(b[:head], a, n))


# ------------------------------------------------------------------------------ reading notes
def verovio_pitches(path: Path) -> Pitches:
    """MIDI pitches of a score by onset (then pitch), from Verovio's MIDI rendering."""
    import verovio

    from synthesis.engrave import EngraveError, parse_midi

    if hasattr(verovio, "enableLog"):
        verovio.enableLog(verovio.LOG_OFF)
    tk = verovio.toolkit()
    tk.setOptions({"xmlIdSeed": 1})
    if not tk.loadData(path.read_text(encoding="utf-8", errors="replace")):
        raise EngraveError(f"{path}: Verovio could not read it")
    return tuple(n.pitch for n in parse_midi(base64.b64decode(tk.renderToMIDI())))


def music21_pitches(path: Path) -> Pitches:
    """MIDI pitches of a score by offset (then pitch), read with music21 (the fallback)."""
    import music21

    score = music21.converter.parse(str(path))
    notes: list[tuple[float, int]] = []
    for el in score.flatten().notes:
        offset = float(el.getOffsetInHierarchy(score))
        notes.extend((offset, int(p.midi)) for p in el.pitches)
    return tuple(p for _, p in sorted(notes))


@dataclass(frozen=True)
class ScoreNotes:
    pitches: Pitches
    reader: str  #: "verovio" or "music21 (verovio: <why>)"


def read_notes(path: Path) -> ScoreNotes:
    """The notes of a score with Verovio, or with music21 where Verovio fails or crashes."""
    try:
        return ScoreNotes(tuple(run_isolated(verovio_pitches, path, timeout=READ_TIMEOUT_S)), "verovio")
    except IsolatedError as e:
        return ScoreNotes(
            tuple(run_isolated(music21_pitches, path, timeout=READ_TIMEOUT_S)), f"music21 (verovio: {e})"
        )


# ------------------------------------------------------------------------------ matching
@dataclass(frozen=True)
class CorpusFile:
    pid: str  #: the corpus piece id (trainer.corpus.sources)
    file: str  #: path relative to the corpora folder
    notes: ScoreNotes


def corpus_files(corpora: Path, sources: Sequence[str], log: Callable[[str], None]) -> list[CorpusFile]:
    out = []
    for src in sources:
        for item in folder_items(corpora / src):
            notes = read_notes(item.path)
            rel = item.path.relative_to(corpora).as_posix()
            log(f"read {rel}: {len(notes.pitches)} notes ({notes.reader})")
            out.append(CorpusFile(item.pid, rel, notes))
    return out


def rank_candidates(work: Pitches, files: Sequence[CorpusFile]) -> list[tuple[float, CorpusFile]]:
    """Corpus files by similarity to a work, best first (ties by piece id)."""
    scored = [(round(similarity(work, f.notes.pitches), 4), f) for f in files]
    return sorted(scored, key=lambda sf: (-sf[0], sf[1].pid))


def work_entry(
    work: Work,
    notes: ScoreNotes,
    ranked: list[tuple[float, CorpusFile]],
    same_work: list[tuple[float, str]],
    threshold: float,
) -> dict[str, Any]:
    def row(score: float, f: CorpusFile) -> dict[str, Any]:
        return {"pid": f.pid, "file": f.file, "score": score}

    return {
        "work_id": work.id,
        "performances": len(work.performances),
        "notes": len(notes.pitches),
        "reader": notes.reader,
        "matches": [row(s, f) for s, f in ranked if s >= threshold],
        "best_others": [row(s, f) for s, f in ranked if s < threshold][:CANDIDATES],
        "same_work_as": [{"folder": other, "score": s} for s, other in same_work],
    }


def match_all(
    works: list[Work],
    files: list[CorpusFile],
    threshold: float = THRESHOLD,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole matches document for ``works`` against ``files``."""
    notes = {}
    for w in works:
        notes[w.folder] = read_notes(w.score)
        log(f"read {w.folder}: {len(notes[w.folder].pitches)} notes ({notes[w.folder].reader})")
    entries = {}
    for w in works:
        same = [
            (round(similarity(notes[w.folder].pitches, notes[o.folder].pitches), 4), o.folder)
            for o in works
            if o.folder != w.folder
        ]
        same_work = sorted((s, f) for s, f in same if s >= threshold)
        entries[w.folder] = work_entry(
            w, notes[w.folder], rank_candidates(notes[w.folder].pitches, files), same_work, threshold
        )
    matched = [f for f, e in entries.items() if e["matches"]]
    return {
        "method": {
            "ngram": NGRAM,
            "head_notes": HEAD_NOTES,
            "threshold": threshold,
            "notes": "Verovio MIDI pitches by onset then pitch; music21 where Verovio fails",
            "similarity": "max of both ways: share of the n-grams of one score's first head_notes "
            "notes found anywhere in the other",
        },
        "corpus_files": len(files),
        "works": entries,
        "summary": {
            "work_folders": len(works),
            "with_matches": len(matched),
            "without_matches": sorted(set(entries) - set(matched)),
            "matched_pids": sorted({m["pid"] for e in entries.values() for m in e["matches"]}),
        },
    }


def write_matches(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def load_matches(path: Path = DEFAULT_OUT) -> dict[str, Any]:
    """The committed matches document."""
    return dict(json.loads(Path(path).read_text()))


def matched_corpus_pids(doc: dict[str, Any]) -> frozenset[str]:
    """Corpus piece ids that are works of the real-dev set, from a matches document."""
    return frozenset(m["pid"] for e in doc["works"].values() for m in e["matches"])


def realdev_corpus_pids() -> frozenset[str]:
    """Corpus pieces that are works of ``../shared/real-dev``, from the committed matches
    (what the corpus build leaves out of ``train``)."""
    return matched_corpus_pids(load_matches())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--realdev", type=Path, default=DEFAULT_REALDEV)
    p.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    p.add_argument(
        "--source",
        action="append",
        default=None,
        help=f"corpus folder under --corpora (repeatable; default {', '.join(DEFAULT_SOURCES)})",
    )
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(f"matches: {msg}", file=sys.stderr, flush=True)

    works = find_works(args.realdev)
    files = corpus_files(args.corpora, args.source or list(DEFAULT_SOURCES), log)
    doc = match_all(works, files, args.threshold, log)
    write_matches(doc, args.out)
    for folder, e in doc["works"].items():
        found = ", ".join(f"{m['pid']} ({m['score']:.2f})" for m in e["matches"]) or "none"
        best = e["best_others"][0] if e["best_others"] else None
        other = f"; best other {best['pid']} ({best['score']:.2f})" if best else ""
        print(f"{folder:40s} -> {found}{other}")
    s = doc["summary"]
    print(f"{s['with_matches']} of {s['work_folders']} work folders match corpus files; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
