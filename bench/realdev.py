"""Benchmark: piece identification on real human performances (real-performance validation, ASAP).

    python -m bench.realdev [--model models/default] [--data /work/data/realdev]
        [--corpus /work/data/corpus] [--distractors /work/data/realdev-distractors] [--look shifted]
        [--sizes 40,200,all] [--open-set] [--lengths 10,20,30] [--per-composer N] [--limit N] [--seed 0]
        [--hop 0.5] [--hub-weight W] [--sequence-weight W] [--stretch F] [--tempo-votes F,F] [--dump FILE] [--work DIR]
        [--works-of SET_DIR]
        [--out bench/results/realdev.json]

The set is built by ``python -m trainer.realdev.build`` (real performances of ASAP works by twelve
composers, synthesised with the held-out csound soundfont in a room with noise; their scores
engraved in Leland and degraded like scans). Validation only: never trained on.

1. Library (``scoreid library build``'s code path, :func:`scoreid.library.build.add_folder`, on
   folders of page images; cached in ``--work`` per model fingerprint): the real-dev page folders;
   the corpus test-split pieces with the pages of one look each (``--look``: ``shifted`` = the
   Petaluma pages, ``same`` = the first training-font look; skipped when ``--corpus`` has no
   corpus); and the distractors of ``python -m trainer.realdev.distractors`` (``--distractors``: the
   corpora and music21 scores in the real-dev look). Corpus pieces that are the same works as
   real-dev scores (``trainer/realdev/corpus_matches.json``) are left out: the library holds each
   work once.
2. ``--sizes``: the library sizes to measure at (``all``: the whole library). For an excerpt and a
   size N the library is the excerpt's own work and N - 1 other pieces drawn from the whole library
   with an RNG named by the excerpt and N (:meth:`scoreid.library.store.Library.subset`: nothing is
   embedded again; each audio window is embedded once and replayed at every size). ``--open-set``:
   the longest excerpts are also streamed against a library of N pieces *without* their work (the
   stream is out of the library: any identity is wrong).
3. Every performance (``--per-composer N``: N of each composer, round-robin over its works;
   ``--limit N``: N in all, round-robin over the works) gives one excerpt per length in
   ``--lengths``, starting at a seeded random offset (:mod:`trainer.realdev.excerpts`, ``--seed``),
   streamed from its FLAC through :class:`scoreid.identify.stream.Identifier` in ``--hop`` s chunks,
   then ``finish()`` — as ``scoreid identify`` streams a file; the final ranking is ``snapshot`` at
   the end.
4. Per size, length and composer: top-1 accuracy and MRR of the true piece in the final ranking (a
   piece that got no vote has reciprocal rank 0); the time to identify (the first hop from which the
   top-1 is right at every later hop; median over the longest excerpts, "never" when fewer than half
   are right at the end); the calibrated identity at the end (:mod:`scoreid.identify.confidence`):
   right (names the piece), wrong (names another), and when it first named the right piece; top-1
   against seconds heard (every hop of the longest excerpts: more audio must not make it worse);
   out-of-library streams named (``--open-set``).

``--stretch F`` and ``--tempo-votes F,F,...`` (test-time tempo levers, :mod:`bench.tempo_lever`,
measured in RESULTS.md): each excerpt's spectrogram stretched in time by F before it is windowed
(F > 1: as if played F times slower; streamed all at once, so the hops' times are the stretched
stream's), or every window voting at several tempo factors.

Prints the tables and writes JSON (``null`` time to identify = never identified). ``--dump`` writes
every hop's followed candidates and identity evidence (for fitting the identity).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench.follow import CachedEncoder, add_set_argument, follower_overrides
from bench.identify import candidates
from bench.report import cpu_name, write_result
from bench.tempo_lever import TempoVotes, stretch_frames
from scoreid import contract as C
from scoreid.audio.spectrogram import spectrogram
from scoreid.identify.engine import CANDIDATES, SEQUENCE_WEIGHT
from scoreid.identify.stream import DEFAULT_HOP_S, Identifier, time_to_identify
from scoreid.inference import load_model
from scoreid.library.build import add_folder, open_or_create, remove_piece
from scoreid.library.store import INDEX, Library, read_index, write_index
from scoreid.tensors import model_fingerprint
from trainer.realdev.build import DEFAULT_DATA
from trainer.realdev.distractors import DEFAULT_DATA as DEFAULT_DISTRACTORS
from trainer.realdev.excerpts import Excerpt, plan_excerpts
from trainer.realdev.matches import DEFAULT_OUT as DEFAULT_MATCHES
from trainer.realdev.matches import load_matches, matched_corpus_pids
from trainer.realdev.works import item_rng, work_id

ROOT = Path(__file__).resolve().parents[1]
#: where the staged sheets and the built libraries are kept between runs (``--work``)
DEFAULT_WORK = Path(os.environ.get("TMPDIR", "/tmp")) / "scoreid-bench-realdev"

Log = Callable[[str], None]


def log(msg: str) -> None:
    print(f"realdev: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the library
def corpus_look_pages(corpus_dir: Path, entry: dict[str, Any], pid: str, look: str) -> list[Path]:
    """The page PNGs of a corpus piece's first render of condition ``look`` (``same``/``shifted``)."""
    render = next((r for r in entry.get("renders", []) if r.startswith(look)), None)
    if render is None:
        return []
    return sorted((corpus_dir / "pages" / pid).glob(f"{render}-p*.png"))


def stage_corpus_folder(pid: str, entry: dict[str, Any], pages: list[Path], sheets: Path) -> Path:
    """A folder of page images for one corpus piece (hard links, or copies across file systems)."""
    folder = sheets / pid
    if (folder / "piece.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for pg in pages:
        dst = folder / pg.name
        if not dst.exists():
            try:
                os.link(pg, dst)
            except OSError:
                shutil.copyfile(pg, dst)
    meta = {"title": entry.get("title", pid), "composer": entry.get("composer", "")}
    (folder / "piece.json").write_text(json.dumps(meta))
    return folder


def corpus_test_folders(
    corpus_dir: Path, look: str, exclude: AbstractSet[str], sheets: Path
) -> tuple[list[Path], list[str]]:
    """Staged folders of the test split's pieces (minus ``exclude``), and the excluded ones present."""
    index = json.loads((corpus_dir / "index.json").read_text())
    folders, excluded = [], []
    for pid in index["splits"]["test"]:
        if pid in exclude:
            excluded.append(pid)
            continue
        pages = corpus_look_pages(corpus_dir, index["pieces"][pid], pid, look)
        if pages:
            folders.append(stage_corpus_folder(pid, index["pieces"][pid], pages, sheets))
    return folders, excluded


def build_library(folders: Sequence[Path], model: Path, lib_dir: Path, logf: Log) -> Library:
    """The library of exactly ``folders`` (pieces of an earlier run that are not wanted are removed)."""
    wanted = {f.name for f in folders}
    if (lib_dir / INDEX).exists():
        for pid in sorted(set(read_index(lib_dir)["pieces"]) - wanted):
            remove_piece(lib_dir, pid)
    enc = load_model(model)
    index = open_or_create(lib_dir, enc, model, None)
    for folder in folders:
        # no copies of the page files: the bench draws no page, and they would double its disk use
        add_folder(index, lib_dir, folder, enc, lambda m: logf(f"library: {m}"), keep_pages=False)
    write_index(lib_dir, index)
    return Library.open(lib_dir)


# ------------------------------------------------------------------------------ streaming
@dataclass
class ExcerptResult:
    work: str
    folder: str
    performer: str
    composer: str
    length_s: float
    start_s: float
    size: int  #: pieces in the library it was streamed against
    in_library: bool  #: False: an open-set stream (its work left out of the library)
    rank: int | None  #: 1-based rank of the true piece in the final ranking; None: no votes
    top1: str | None
    tti_s: float | None  #: time to identify; None: not identified
    identity: str | None  #: the calibrated identity at the end (None: unknown)
    first_identity_s: float | None  #: first hop whose identity was the true piece
    first_wrong_identity_s: float | None  #: first hop whose identity was another piece
    right: str  #: per hop, "1" where the top piece was the true one, else "0"

    @property
    def rr(self) -> float:
        return 1.0 / self.rank if self.rank else 0.0


def rank_of(ranking: Sequence[tuple[str, float, float]], truth: str) -> int | None:
    return next((i + 1 for i, (pid, _s, _v) in enumerate(ranking) if pid == truth), None)


@dataclass
class Streamed:
    rank: int | None
    top1: str | None
    tti_s: float
    identity: str | None
    first_identity_s: float | None
    first_wrong_identity_s: float | None
    right: list[bool]


def stream(
    lib: Library,
    enc: Any,
    audio: np.ndarray,
    truth: str,
    hop_s: float,
    sequence_weight: float = 0.0,
    dump: list[Any] | None = None,
    followed: int = CANDIDATES,
    stretch: float = 1.0,
    tempo_votes: Sequence[float] = (),
) -> Streamed:
    """Stream ``audio`` as ``scoreid identify`` does and say how it went for the true piece
    ``truth`` (which need not be in ``lib``). ``dump``: gets each hop's (t, candidates, identity
    evidence, identity, probability) and the final candidates (for fitting offline, ``--dump``).
    ``stretch`` != 1: the spectrogram stretched in time is streamed; ``tempo_votes``: every window
    votes at those tempo factors (:mod:`bench.tempo_lever`)."""
    changes: dict[str, Any] = {"hop_s": hop_s, "sequence_weight": sequence_weight, "candidates": followed}
    ident = TempoVotes(lib, enc, tempo_votes, **changes) if tempo_votes else Identifier(lib, enc, **changes)
    chunk = max(1, int(round(hop_s * C.SAMPLE_RATE)))
    ts: list[float] = []
    right: list[bool] = []
    hops: list[Any] = []
    first_id: list[float] = []
    first_wrong: list[float] = []

    def run(ups: list[Any]) -> None:
        for u in ups:
            ts.append(u.t)
            right.append(bool(u.ranking) and u.ranking[0][0] == truth)
            if u.identity is not None:
                (first_id if u.identity == truth else first_wrong).append(u.t)
            if dump is not None:
                ev = ident.evidence()
                hops.append(
                    [
                        u.t,
                        candidates(ident),
                        [
                            ev.windows,
                            round(ev.share, 5),
                            round(ev.log_ratio, 4),
                            round(ev.coherence, 3),
                            round(ev.stillness, 3),
                        ],
                        u.identity,
                        round(u.confidence, 4),
                    ]
                )

    if stretch == 1.0:
        for s in range(0, len(audio), chunk):
            run(ident.push(audio[s : s + chunk]))
        seconds = len(audio) / C.SAMPLE_RATE
    else:
        frames = stretch_frames(spectrogram(audio), stretch)
        run(ident.push_frames(frames))
        seconds = len(frames) / C.FPS
    run(ident.finish())
    end = ident.snapshot(seconds)
    final = end.ranking
    if dump is not None:
        by_tally = [(p, 0.0, v) for p, v in ident.engine.tally.top(len(lib.piece_ids))]
        dump.append(
            {
                "truth": truth,
                "in_library": truth in lib.rows,
                "size": len(lib.piece_ids),
                "hops": hops,
                "final": candidates(ident),
                "rank_by_tally": rank_of(by_tally, truth),
            }
        )
    return Streamed(
        rank_of(final, truth),
        final[0][0] if final else None,
        time_to_identify(ts, right),
        end.identity,
        first_id[0] if first_id else None,
        first_wrong[0] if first_wrong else None,
        right,
    )


def with_hub_weight(lib: Library, weight: float) -> Library:
    """The library searched with another weight of its hub correction (0: none); nothing re-scored."""
    if weight and "hub" not in lib.index:
        raise SystemExit("bench/realdev: the library has no hub scores (a model without a hub bank)")
    index = {**lib.index, "hub": {**lib.index.get("hub", {}), "weight": float(weight)}}
    if not weight:
        index.pop("hub", None)
    return Library(lib.dir, index, lib.vectors, lib.meta, lib.piece_ids, lib.hub)


def library_tag(look: str, fingerprint: str, distractors: bool = True) -> str:
    """The folder (under ``--work``) of the library this benchmark builds for the sheet space of the
    model whose :func:`~scoreid.tensors.model_fingerprint` is ``fingerprint``, in ``look`` (``-d``:
    with distractors); ``bench.realdev_follow`` follows on it."""
    return f"library-{look}-{fingerprint[:12]}" + ("-d" if distractors else "")


def excerpt_library(lib: Library, truth: str, size: int, key: str, seed: int, in_library: bool) -> Library:
    """The library of ``size`` pieces an excerpt is streamed against: its work (unless
    ``in_library`` is False) and others drawn with an RNG named by the excerpt and the size."""
    others = [p for p in lib.piece_ids if p != truth]
    n_other = size - 1 if in_library else size
    if in_library and n_other >= len(others):
        return lib
    rng = item_rng(seed, f"library:{key}:{size}:{int(in_library)}")
    pick = [others[i] for i in sorted(rng.choice(len(others), min(n_other, len(others)), replace=False))]
    return lib.subset(pick + ([truth] if in_library else []))


def read_excerpt(path: Path, start_s: float, length_s: float) -> np.ndarray:
    a = int(round(start_s * C.SAMPLE_RATE))
    x, sr = sf.read(str(path), start=a, stop=a + int(round(length_s * C.SAMPLE_RATE)), dtype="float32")
    if sr != C.SAMPLE_RATE:
        raise SystemExit(f"bench/realdev: {path} is {sr} Hz, expected {C.SAMPLE_RATE}")
    return x if x.ndim == 1 else x.mean(axis=1)


# ------------------------------------------------------------------------------ selection and summary
def composer_of(folder: str) -> str:
    return folder.split("/")[0]


def round_robin(perfs: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """``limit`` of ``perfs`` taking one of each work in turn (works and performers sorted)."""
    by_work: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(perfs, key=lambda p: (p["folder"], p["performer"])):
        by_work.setdefault(p["work"], []).append(p)
    queues = [by_work[w] for w in sorted(by_work)]
    out: list[dict[str, Any]] = []
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def select_performances(
    perfs: list[dict[str, Any]], limit: int | None, per_composer: int | None = None
) -> list[dict[str, Any]]:
    """All performances (sorted), or ``per_composer`` of each composer and/or ``limit`` in all,
    round-robin over the works."""
    perfs = sorted(perfs, key=lambda p: (p["folder"], p["performer"]))
    if per_composer is not None:
        by_comp: dict[str, list[dict[str, Any]]] = {}
        for p in perfs:
            by_comp.setdefault(composer_of(p["folder"]), []).append(p)
        perfs = sorted(
            (q for c in sorted(by_comp) for q in round_robin(by_comp[c], per_composer)),
            key=lambda p: (p["folder"], p["performer"]),
        )
    return perfs if limit is None else round_robin(perfs, limit)


def finite_or_none(x: float) -> float | None:
    return round(x, 2) if np.isfinite(x) else None


def median_finite(x: np.ndarray) -> float | None:
    """The median of the finite values (None if there are none)."""
    ok = x[np.isfinite(x)]
    return round(float(np.median(ok)), 2) if len(ok) else None


def summary(rs: Sequence[ExcerptResult]) -> dict[str, Any]:
    """Top-1, MRR, time to identify and the calibrated identity of in-library excerpts."""
    tti = np.array([np.inf if r.tti_s is None else r.tti_s for r in rs])
    t_id = np.array(
        [np.inf if r.first_identity_s is None else r.first_identity_s for r in rs if r.identity == r.work]
    )
    return {
        "excerpts": len(rs),
        "top1": round(float(np.mean([r.rank == 1 for r in rs])), 4),
        "mrr": round(float(np.mean([r.rr for r in rs])), 4),
        "identified": round(float(np.isfinite(tti).mean()), 4),
        "median_tti_s": finite_or_none(float(np.median(tti))),
        "median_tti_identified_s": median_finite(tti),
        "identity_right": round(float(np.mean([r.identity == r.work for r in rs])), 4),
        "identity_wrong": round(float(np.mean([r.identity not in (None, r.work) for r in rs])), 4),
        "identity_ever_wrong": round(float(np.mean([r.first_wrong_identity_s is not None for r in rs])), 4),
        "median_time_to_identity_s": median_finite(t_id),
    }


def open_summary(rs: Sequence[ExcerptResult]) -> dict[str, Any]:
    """Out-of-library streams: how many end with an identity (all wrong), and ever had one."""
    return {
        "streams": len(rs),
        "named_at_end": round(float(np.mean([r.identity is not None for r in rs])), 4),
        "ever_named": round(float(np.mean([r.first_wrong_identity_s is not None for r in rs])), 4),
    }


def curve(rs: Sequence[ExcerptResult], hop_s: float) -> list[list[float]]:
    """[seconds heard, top-1 accuracy] at every hop of the excerpts (the shortest one's hops)."""
    if not rs:
        return []
    n = min(len(r.right) for r in rs)
    acc = np.mean([[c == "1" for c in r.right[:n]] for r in rs], axis=0)
    return [[round((i + 1) * hop_s, 2), round(float(a), 4)] for i, a in enumerate(acc)]


def summarise(results: Sequence[ExcerptResult], lengths: Sequence[float]) -> list[dict[str, Any]]:
    """Per length: the in-library excerpts' summary (at the sizes present, each its own row)."""
    rows = []
    for size in sorted({r.size for r in results}):
        for length in lengths:
            rs = [r for r in results if r.length_s == length and r.size == size and r.in_library]
            if rs:
                rows.append({"size": size, "length_s": length, **summary(rs)})
    return rows


def by_composer(
    results: Sequence[ExcerptResult], lengths: Sequence[float]
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for comp in sorted({r.composer for r in results}):
        out[comp] = summarise([r for r in results if r.composer == comp], lengths)
    return out


def training_splits(matches: dict[str, Any], corpus_dir: Path) -> dict[str, list[str]]:
    """Work folder -> the ``--corpus`` splits of its corpus matches (``unbuilt``: not in the corpus)."""
    index = corpus_dir / "index.json"
    pieces = json.loads(index.read_text())["pieces"] if index.is_file() else {}
    return {
        folder: sorted({pieces.get(m["pid"], {}).get("split", "unbuilt") for m in e["matches"]})
        for folder, e in matches["works"].items()
    }


def per_work(results: Sequence[ExcerptResult], longest: float, size: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for w in sorted({r.work for r in results}):
        rs = [r for r in results if r.work == w and r.length_s == longest and r.size == size and r.in_library]
        out[w] = {
            "excerpts": len(rs),
            "top1": round(float(np.mean([r.rank == 1 for r in rs])), 4) if rs else None,
            "mrr": round(float(np.mean([r.rr for r in rs])), 4) if rs else None,
        }
    return out


def fmt_s(x: float | None, never: str = "never") -> str:
    return never if x is None else f"{x:.1f}"


def print_table(rows: list[dict[str, Any]], header: str) -> None:
    print(header)
    print(
        "| library | excerpt s | excerpts | top-1 | MRR | median time to identify s "
        "| identity right | identity wrong | ever wrong | median time to identity s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} | {r['length_s']:g} | {r['excerpts']} | {r['top1']:.3f} | {r['mrr']:.3f} "
            f"| {fmt_s(r['median_tti_s'])} | {r['identity_right']:.3f} | {r['identity_wrong']:.3f} "
            f"| {r['identity_ever_wrong']:.3f} | {fmt_s(r['median_time_to_identity_s'], '-')} |"
        )


def print_composers(
    table: dict[str, list[dict[str, Any]]], sizes: Sequence[int], lengths: Sequence[float]
) -> None:
    """One row per composer: top-1 and identity right at each (size, length)."""
    cols = [(n, ln) for n in sizes for ln in lengths]
    print("| composer | excerpts | " + " | ".join(f"top-1 / identity {ln:g} s @{n}" for n, ln in cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for comp, rows in table.items():
        cell = {(r["size"], r["length_s"]): r for r in rows}
        n_ex = max((r["excerpts"] for r in rows), default=0)
        vals = [
            f"{cell[c]['top1']:.2f} / {cell[c]['identity_right']:.2f}" if c in cell else "-" for c in cols
        ]
        print(f"| {comp} | {n_ex} | " + " | ".join(vals) + " |")


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the set (python -m trainer.realdev.build)"
    )
    p.add_argument(
        "--corpus", type=Path, default=Path("/work/data/corpus"), help="corpus: test-split distractors"
    )
    p.add_argument(
        "--distractors",
        type=Path,
        default=DEFAULT_DISTRACTORS,
        help="python -m trainer.realdev.distractors output (skipped when absent)",
    )
    p.add_argument("--look", default="shifted", choices=("same", "shifted"), help="corpus pages' look")
    p.add_argument("--matches", type=Path, default=DEFAULT_MATCHES)
    p.add_argument(
        "--works-of",
        type=Path,
        action="append",
        default=[],
        metavar="SET_DIR",
        help="only the works that also have pages in this real-dev set (repeatable): two sets engraved "
        "differently compared on the same works and performances",
    )
    p.add_argument("--sizes", default="all", help="library sizes, e.g. 40,200,all")
    p.add_argument(
        "--open-set", action="store_true", help="also stream the longest excerpts out of the library"
    )
    p.add_argument("--lengths", default="10,20,30", help="excerpt lengths, seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the excerpt offsets and the libraries")
    p.add_argument("--limit", type=int, default=None, help="only N performances (round-robin over works)")
    p.add_argument("--per-composer", type=int, default=None, help="only N performances of each composer")
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    p.add_argument(
        "--hub-weight",
        type=float,
        default=None,
        help="weight of the hub correction (default: the library's, from the model; 0: none)",
    )
    p.add_argument(
        "--sequence-weight",
        type=float,
        default=SEQUENCE_WEIGHT,
        help="order the followed candidates by log(tally) + W x sequence evidence (default: the engine's; 0: tally only)",
    )
    p.add_argument(
        "--stretch",
        type=float,
        default=1.0,
        help="stretch each excerpt's spectrogram in time by F (> 1: as if played slower; a test-time lever)",
    )
    p.add_argument(
        "--tempo-votes",
        default="",
        metavar="F,F,...",
        help="every window votes at these tempo factors, 1 among them (bench.tempo_lever; a test-time lever)",
    )
    p.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="write every hop's followed candidates and identity evidence as JSON",
    )
    p.add_argument(
        "--candidates", type=int, default=CANDIDATES, help="pieces of the tally followed (and reordered)"
    )
    p.add_argument("--threads", type=int, default=1, help="encoder threads while streaming")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "int8"),
        help="the audio encoder streaming (int8: audio.int8.onnx and its incremental graphs)",
    )
    p.add_argument(
        "--no-incremental",
        action="store_true",
        help="embed every audio window whole (the incremental encoder's graphs not loaded)",
    )
    add_set_argument(p)
    p.add_argument(
        "--prepare-only", action="store_true", help="build (or bring up to date) the library and stop"
    )
    p.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="staged sheets and built libraries (kept between runs)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realdev.json")
    return p.parse_args(argv)


def parse_sizes(text: str, n_all: int) -> list[int]:
    out = set()
    for x in text.split(","):
        x = x.strip()
        if x:
            out.add(n_all if x == "all" else min(int(x), n_all))
    if not out or min(out) < 2:
        raise SystemExit("bench/realdev: --sizes wants library sizes of at least 2 pieces (or 'all')")
    return sorted(out)


def distractor_folders(root: Path) -> list[Path]:
    """The finished distractor page folders (a folder is finished once its ``piece.json`` is written:
    a build still running or stopped gives the ones it finished)."""
    return sorted(f.parent for f in (root / "pieces").glob("*/piece.json"))


def run_excerpts(
    lib: Library,
    enc: Any,
    data: Path,
    perfs: list[dict[str, Any]],
    plan: list[Excerpt],
    hop: float,
    sizes: Sequence[int],
    open_set: bool,
    seed: int,
    sequence_weight: float = 0.0,
    dump: list[Any] | None = None,
    followed: int = CANDIDATES,
    stretch: float = 1.0,
    tempo_votes: Sequence[float] = (),
) -> list[ExcerptResult]:
    by_key = {(work_id(p["folder"]), p["performer"]): p for p in perfs}
    longest = max(e.length_s for e in plan) if plan else 0.0
    results: list[ExcerptResult] = []
    t0 = time.perf_counter()
    for i, ex in enumerate(plan):
        p = by_key[(ex.folder, ex.performer)]
        audio = read_excerpt(data / p["audio"], ex.start_s, ex.length_s)
        memo = CachedEncoder(enc)  # each window embedded once, replayed at every size
        key = f"{ex.folder}/{ex.performer}/{ex.length_s:g}"
        runs = [(n, True) for n in sizes] + (
            [(n, False) for n in sizes] if open_set and ex.length_s == longest else []
        )
        said = []
        for size, inside in runs:
            sub = excerpt_library(lib, p["work"], size, key, seed, inside)
            st = stream(
                sub, memo, audio, p["work"], hop, sequence_weight, dump, followed, stretch, tempo_votes
            )
            if dump is not None:
                dump[-1].update(
                    {
                        "work": p["work"],
                        "length_s": ex.length_s,
                        "start_s": ex.start_s,
                        "composer": composer_of(p["folder"]),
                    }
                )
            results.append(
                ExcerptResult(
                    p["work"],
                    p["folder"],
                    p["performer"],
                    composer_of(p["folder"]),
                    ex.length_s,
                    ex.start_s,
                    len(sub.piece_ids),
                    inside,
                    st.rank,
                    st.top1,
                    finite_or_none(st.tti_s),
                    st.identity,
                    st.first_identity_s,
                    st.first_wrong_identity_s,
                    "".join("1" if r else "0" for r in st.right),
                )
            )
            said.append(
                f"{len(sub.piece_ids)}{'' if inside else ' out'}: "
                + (
                    f"rank {st.rank}, {'id ' + str(st.identity == p['work']) if st.identity else 'unknown'}"
                    if inside
                    else ("named" if st.identity else "unknown")
                )
            )
        elapsed = time.perf_counter() - t0
        eta = elapsed / (i + 1) * (len(plan) - i - 1)
        log(
            f"{i + 1}/{len(plan)} {key} @ {ex.start_s:.1f}: {'; '.join(said)}; "
            f"{elapsed:.0f} s elapsed, about {eta:.0f} s left"
        )
    return results


def restrict_works(set_doc: dict[str, Any], data: Path, others: Sequence[Path]) -> dict[str, Any]:
    """``set_doc`` with only the works that have pages here and in every set of ``others``, and only
    their performances (their order kept: the same performances are drawn in every such set)."""
    if not others:
        return set_doc

    def paged(root: Path, doc: dict[str, Any]) -> set[str]:
        return {w for w in doc["pieces"] if (root / "pieces" / w / "piece.json").is_file()}

    works = paged(data, set_doc)
    for other in others:
        works &= paged(other, json.loads((other / "set.json").read_text()))
    return {
        **set_doc,
        "pieces": {w: v for w, v in set_doc["pieces"].items() if w in works},
        "performances": [p for p in set_doc["performances"] if p["work"] in works],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tempo_votes = [float(f) for f in args.tempo_votes.split(",") if f.strip()]
    overrides = follower_overrides(args.set)
    t_start = time.perf_counter()
    if not (args.model / "manifest.json").is_file():
        raise SystemExit(f"bench/realdev: no model at {args.model} (manifest.json)")
    set_doc = restrict_works(json.loads((args.data / "set.json").read_text()), args.data, args.works_of)
    matches = load_matches(args.matches)
    lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    fp = model_fingerprint(args.model)[:12]
    realdev_folders = [args.data / "pieces" / w for w in sorted(set_doc["pieces"])]
    corpus_folders: list[Path] = []
    excluded: list[str] = []
    if (args.corpus / "index.json").is_file():
        corpus_folders, excluded = corpus_test_folders(
            args.corpus, args.look, matched_corpus_pids(matches), args.work / "sheets" / args.look
        )
    extra = distractor_folders(args.distractors)
    taken = {f.name for f in realdev_folders + corpus_folders}
    extra = [f for f in extra if f.name not in taken]  # a corpus test piece is staged once, in its --look
    t0 = time.perf_counter()
    tag = library_tag(args.look, fp, bool(extra))
    lib = build_library(realdev_folders + corpus_folders + extra, args.model, args.work / tag, log)
    t_lib = time.perf_counter() - t0
    log(f"library: {len(lib.piece_ids)} pieces, {len(lib)} windows ({t_lib:.0f} s)")
    if args.prepare_only:
        return 0
    sizes = parse_sizes(args.sizes, len(lib.piece_ids))
    if args.hub_weight is not None:
        lib = with_hub_weight(lib, args.hub_weight)

    perfs = select_performances(set_doc["performances"], args.limit, args.per_composer)
    perfs = [p for p in perfs if p["work"] in lib.rows]
    plan = plan_excerpts(
        [(work_id(p["folder"]), p["performer"], p["seconds"]) for p in perfs], lengths, args.seed
    )
    log(
        f"streaming {len(plan)} excerpts of {len(perfs)} performances in hops of {args.hop} s "
        f"at library sizes {sizes}{' and out of the library' if args.open_set else ''}"
    )
    enc = load_model(
        args.model, threads=args.threads, precision=args.precision, incremental=not args.no_incremental
    )
    t1 = time.perf_counter()
    dump: list[Any] | None = [] if args.dump else None
    results = run_excerpts(
        lib,
        enc,
        args.data,
        perfs,
        plan,
        args.hop,
        sizes,
        args.open_set,
        args.seed,
        args.sequence_weight,
        dump,
        args.candidates,
        args.stretch,
        tempo_votes,
    )
    if args.dump:
        args.dump.parent.mkdir(parents=True, exist_ok=True)
        args.dump.write_text(json.dumps(dump))
        log(f"wrote the candidates of every hop to {args.dump}")
    t_id = time.perf_counter() - t1

    splits = training_splits(matches, args.corpus)
    canon = {p["folder"]: p["work"] for p in set_doc["performances"]}
    trained_works = {canon.get(f, work_id(f)) for f, s in splits.items() if "train" in s}
    longest = max(lengths)
    rows = summarise(results, lengths)
    unseen_rows = summarise([r for r in results if r.work not in trained_works], lengths)
    composers = by_composer(results, lengths)
    inside = [r for r in results if r.in_library and r.length_s == longest]
    curves = {str(n): curve([r for r in inside if r.size == n], args.hop) for n in sizes}
    out_sizes = sorted({r.size for r in results if not r.in_library})  # "all" leaves one piece out
    open_rows = [
        {
            "size": n,
            "length_s": longest,
            **open_summary([r for r in results if not r.in_library and r.size == n]),
        }
        for n in out_sizes
    ]
    works_benchmarked = sorted({r.work for r in results})
    realdev_in_lib = [w for w in set_doc["pieces"] if w in lib.pieces]
    audio_s = sum(r.length_s for r in results)
    by_comp_n = {c: sum(1 for p in perfs if composer_of(p["folder"]) == c) for c in composers}
    result = {
        "name": "real-performance validation (ASAP, 12 composers, real performances as MIDI)",
        "per_length": rows,
        "by_composer": composers,
        "performances_by_composer": by_comp_n,
        "open_set": open_rows,
        "top1_vs_seconds": curves,
        "per_length_works_not_in_training": unseen_rows,
        "median_seconds_to_identify": next(
            (r["median_tti_s"] for r in rows if r["length_s"] == longest and r["size"] == max(sizes)), None
        ),
        "median_tti_length_s": longest,
        "n_works": len(works_benchmarked),
        "n_performances": len(perfs),
        "n_work_folders": set_doc["work_folders"],
        "limit": args.limit,
        "per_composer": args.per_composer,
        "seed": args.seed,
        "lengths_s": lengths,
        "sizes": sizes,
        "hop_s": args.hop,
        "hub": lib.index.get("hub"),
        "sequence_weight": args.sequence_weight,
        "candidates": args.candidates,
        "stretch": args.stretch,
        "tempo_votes": tempo_votes,
        "follower_overrides": overrides,
        "library": {
            "pieces": len(lib.piece_ids),
            "windows": len(lib),
            "realdev_pieces": len(realdev_in_lib),
            "corpus_test_pieces": len(corpus_folders),
            "distractors": len(extra),
            "corpus_look": args.look,
            "corpus_excluded_as_realdev_works": excluded,
            "dir": str(lib.dir),
        },
        "works_with_corpus_match_in_training": sorted(trained_works),
        "corpus_splits_of_matches": splits,
        "per_work_longest": per_work(results, longest, max(sizes)),
        "sheets": set_doc["sheets"],
        "audio": set_doc["audio"],
        "model": str(args.model),
        "precision": args.precision,
        "incremental": enc.incremental is not None,
        "model_sha256_12": fp,
        "corpus": str(args.corpus),
        "library_build_s": round(t_lib, 1),
        "identify_x_real_time": round(audio_s / max(t_id, 1e-9), 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_name(),
        "excerpts": [asdict(r) for r in results],
    }
    header = (
        f"real-performance validation: {len(works_benchmarked)} works, {len(perfs)} performances"
        f"{f' (--limit {args.limit})' if args.limit else ''}"
        f"{f' (--per-composer {args.per_composer})' if args.per_composer else ''}; library of "
        f"{len(lib.piece_ids)} pieces ({len(realdev_in_lib)} real-dev + {len(corpus_folders)} corpus test, "
        f"{args.look} look + {len(extra)} distractors), {len(lib)} windows; sizes {sizes}; hop {args.hop} s, "
        f"hub correction weight {lib.hub_weight:g}, seed {args.seed}"
    )
    print_table(rows, header)
    print("\nby composer (top-1 / identity right at the end):")
    print_composers(composers, sizes, lengths)
    if open_rows:
        print("\nout of the library (the work left out):")
        print("| library | excerpt s | streams | named at the end | ever named |")
        print("|---:|---:|---:|---:|---:|")
        for r in open_rows:
            print(
                f"| {r['size']} | {r['length_s']:g} | {r['streams']} | {r['named_at_end']:.3f} | {r['ever_named']:.3f} |"
            )
    for n, c in curves.items():
        pts = [f"{s:g} s {a:.2f}" for s, a in c if abs(s % 5) < 1e-6]
        print(f"top-1 vs seconds heard @{n}: " + ", ".join(pts))
    if trained_works:
        print_table(
            unseen_rows,
            f"works with no corpus match in the training split ({len(trained_works)} works left out):",
        )
    print(
        f"wall time {result['wall_s']:.0f} s (library {t_lib:.0f} s, streaming {t_id:.0f} s, "
        f"{result['identify_x_real_time']:g}x real time); {cpu_name()}"
    )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
