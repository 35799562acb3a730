"""Benchmark: piece identification on real human performances (real-performance validation, ASAP).

    python bench/realdev.py [--model models/default] [--data /work/data/realdev]
        [--corpus /work/data/corpus] [--look shifted] [--lengths 10,20,30] [--seed 0] [--limit N]
        [--hop 0.5] [--sequence-weight W] [--dump FILE] [--work DIR] [--out bench/results/realdev.json]

The set is built by ``python -m trainer.realdev.build`` (real performances of ASAP's Mozart and
Haydn works, synthesised with the held-out csound soundfont in a room with noise; their scores
engraved in Leland and degraded like scans). Validation only: never trained on.

1. Library (``scoreid library build``'s code path, :func:`scoreid.library.build.add_folder`, on
   folders of page images; cached in ``--work`` per model fingerprint): the real-dev page folders
   plus, as distractors, the corpus test-split pieces with the pages of one look each (``--look``:
   ``shifted`` = the Petaluma pages, ``same`` = the first training-font look). Corpus pieces that are
   the same works as real-dev scores (``trainer/realdev/corpus_matches.json``) are left out: the
   library holds each work once.
2. Every performance gives one excerpt per length in ``--lengths``, starting at a seeded random
   offset (:mod:`trainer.realdev.excerpts`, ``--seed``), streamed from its FLAC through
   :class:`scoreid.identify.stream.Identifier` in ``--hop`` s chunks, then ``finish()`` — as
   ``scoreid identify`` streams a file; the final ranking is ``snapshot`` at the end.
3. Per length: top-1 accuracy and MRR of the true piece in the final ranking (a piece that got no
   vote has reciprocal rank 0); for every excerpt the time to identify — the first hop from which
   the top-1 is right at every later hop (never: not identified) — reported as the median over the
   longest length's excerpts, as in ``bench/identify.py`` ("never" when fewer than half are
   identified; the median over the identified ones is given beside it). Also per work and for the works none of
   whose corpus matches is in the training split of ``--corpus`` (the model's training corpus).

``--limit N`` benchmarks only N performances, taken round-robin over the works (a quick run; the
library stays whole). Prints a table and writes JSON (``null`` time to identify = never identified).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import write_result  # noqa: E402

from scoreid import contract as C  # noqa: E402
from scoreid.identify.engine import CANDIDATES, SEQUENCE_WEIGHT  # noqa: E402
from scoreid.identify.stream import Identifier, time_to_identify  # noqa: E402
from scoreid.inference import load_model  # noqa: E402
from scoreid.library.build import add_folder, open_or_create, remove_piece  # noqa: E402
from scoreid.library.store import INDEX, Library, read_index, write_index  # noqa: E402
from scoreid.tensors import model_fingerprint  # noqa: E402
from trainer.realdev.build import DEFAULT_DATA  # noqa: E402
from trainer.realdev.excerpts import Excerpt, plan_excerpts  # noqa: E402
from trainer.realdev.matches import DEFAULT_OUT as DEFAULT_MATCHES  # noqa: E402
from trainer.realdev.matches import load_matches, matched_corpus_pids  # noqa: E402
from trainer.realdev.works import work_id  # noqa: E402

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
    corpus_dir: Path, look: str, exclude: set[str], sheets: Path
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
        add_folder(index, lib_dir, folder, enc, lambda m: logf(f"library: {m}"))
    write_index(lib_dir, index)
    return Library.open(lib_dir)


# ------------------------------------------------------------------------------ streaming
@dataclass
class ExcerptResult:
    work: str
    folder: str
    performer: str
    length_s: float
    start_s: float
    rank: int | None  #: 1-based rank of the true piece in the final ranking; None: no votes
    top1: str | None
    tti_s: float | None  #: time to identify; None: not identified

    @property
    def rr(self) -> float:
        return 1.0 / self.rank if self.rank else 0.0


def rank_of(ranking: Sequence[tuple[str, float, float]], truth: str) -> int | None:
    return next((i + 1 for i, (pid, _s, _v) in enumerate(ranking) if pid == truth), None)


def candidates(ident: Identifier) -> list[list[Any]]:
    """The followed candidates now: [piece, tally, sequence evidence (piece null), coherence,
    sequence evidence (library null)] of the tally's top ``EngineSettings.candidates`` (``--candidates``)."""
    f = ident.engine.follower
    return [
        [
            p,
            round(v, 6),
            round(f.evidence(p), 4),
            round(f.coherence(p), 3),
            round(f.evidence(p, "library"), 4),
        ]
        for p, v in ident.engine.tally.top(f.max_candidates)
    ]


def stream(lib: Library, enc: Any, audio: np.ndarray, truth: str, hop_s: float, sequence_weight: float = 0.0,
           dump: list[Any] | None = None, followed: int = CANDIDATES) -> tuple[int | None, str | None, float]:  # fmt: skip
    """Stream ``audio`` as ``scoreid identify`` does: (rank of truth, final top-1, time to identify).
    ``dump``: gets each hop's (t, candidates) and the final candidates (for choosing the sequence
    weight offline, ``--dump``)."""
    ident = Identifier(lib, enc, hop_s=hop_s, sequence_weight=sequence_weight, candidates=followed)
    chunk = max(1, int(round(hop_s * C.SAMPLE_RATE)))
    ts: list[float] = []
    right: list[bool] = []
    hops: list[Any] = []

    def run(ups: list[Any]) -> None:
        for u in ups:
            ts.append(u.t)
            right.append(bool(u.ranking) and u.ranking[0][0] == truth)
            if dump is not None:
                hops.append([u.t, candidates(ident)])

    for s in range(0, len(audio), chunk):
        run(ident.push(audio[s : s + chunk]))
    run(ident.finish())
    final = ident.snapshot(len(audio) / C.SAMPLE_RATE).ranking
    if dump is not None:
        by_tally = [(p, 0.0, v) for p, v in ident.engine.tally.top(len(lib.piece_ids))]
        dump.append(
            {
                "truth": truth,
                "hops": hops,
                "final": candidates(ident),
                "rank_by_tally": rank_of(by_tally, truth),
            }
        )
    return rank_of(final, truth), (final[0][0] if final else None), time_to_identify(ts, right)


def read_excerpt(path: Path, start_s: float, length_s: float) -> np.ndarray:
    a = int(round(start_s * C.SAMPLE_RATE))
    x, sr = sf.read(str(path), start=a, stop=a + int(round(length_s * C.SAMPLE_RATE)), dtype="float32")
    if sr != C.SAMPLE_RATE:
        raise SystemExit(f"bench/realdev: {path} is {sr} Hz, expected {C.SAMPLE_RATE}")
    return x if x.ndim == 1 else x.mean(axis=1)


# ------------------------------------------------------------------------------ selection and summary
def select_performances(perfs: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """All performances (sorted), or ``limit`` of them round-robin over the works."""
    perfs = sorted(perfs, key=lambda p: (p["folder"], p["performer"]))
    if limit is None:
        return perfs
    by_work: dict[str, list[dict[str, Any]]] = {}
    for p in perfs:
        by_work.setdefault(p["work"], []).append(p)
    queues = [by_work[w] for w in sorted(by_work)]
    out: list[dict[str, Any]] = []
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def summarise(results: Sequence[ExcerptResult], lengths: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for length in lengths:
        rs = [r for r in results if r.length_s == length]
        if not rs:
            continue
        tti = np.array([np.inf if r.tti_s is None else r.tti_s for r in rs])
        rows.append({
            "length_s": length, "excerpts": len(rs),
            "top1": round(float(np.mean([r.rank == 1 for r in rs])), 4),
            "mrr": round(float(np.mean([r.rr for r in rs])), 4),
            "identified": round(float(np.isfinite(tti).mean()), 4),
            "median_tti_s": finite_or_none(float(np.median(tti))),
            "median_tti_identified_s": median_finite(tti),
        })  # fmt: skip
    return rows


def finite_or_none(x: float) -> float | None:
    return round(x, 2) if np.isfinite(x) else None


def median_finite(x: np.ndarray) -> float | None:
    """The median of the finite values (None if there are none)."""
    ok = x[np.isfinite(x)]
    return round(float(np.median(ok)), 2) if len(ok) else None


def training_splits(matches: dict[str, Any], corpus_dir: Path) -> dict[str, list[str]]:
    """Work folder -> the ``--corpus`` splits of its corpus matches (``unbuilt``: not in the corpus)."""
    pieces = json.loads((corpus_dir / "index.json").read_text())["pieces"]
    return {folder: sorted({pieces.get(m["pid"], {}).get("split", "unbuilt") for m in e["matches"]})
            for folder, e in matches["works"].items()}  # fmt: skip


def per_work(results: Sequence[ExcerptResult], longest: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for w in sorted({r.work for r in results}):
        rs = [r for r in results if r.work == w and r.length_s == longest]
        out[w] = {"excerpts": len(rs), "top1": round(float(np.mean([r.rank == 1 for r in rs])), 4) if rs else None,
                  "mrr": round(float(np.mean([r.rr for r in rs])), 4) if rs else None}  # fmt: skip
    return out


def print_table(rows: list[dict[str, Any]], header: str) -> None:
    print(header)
    print(
        "| excerpt s | excerpts | top-1 | MRR | identified | median time to identify s | median of the identified s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        med = "never" if r["median_tti_s"] is None else f"{r['median_tti_s']:.1f}"
        med_id = "-" if r["median_tti_identified_s"] is None else f"{r['median_tti_identified_s']:.1f}"
        print(f"| {r['length_s']:g} | {r['excerpts']} | {r['top1']:.3f} | {r['mrr']:.3f} | {r['identified']:.1%} "
              f"| {med} | {med_id} |")  # fmt: skip


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
    p.add_argument("--look", default="shifted", choices=("same", "shifted"), help="corpus pages' look")
    p.add_argument("--matches", type=Path, default=DEFAULT_MATCHES)
    p.add_argument("--lengths", default="10,20,30", help="excerpt lengths, seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the excerpt offsets")
    p.add_argument("--limit", type=int, default=None, help="only N performances (round-robin over works)")
    p.add_argument("--hop", type=float, default=0.5)
    p.add_argument(
        "--sequence-weight",
        type=float,
        default=SEQUENCE_WEIGHT,
        help="order the followed candidates by log(tally) + W x sequence evidence (default: the engine's; 0: tally only)",
    )
    p.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="write every hop's followed candidates (tally, sequence evidence, coherence) as JSON",
    )
    p.add_argument(
        "--candidates", type=int, default=CANDIDATES, help="pieces of the tally followed (and reordered)"
    )
    p.add_argument("--threads", type=int, default=1, help="encoder threads while streaming")
    p.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "scoreid-bench-realdev"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realdev.json")
    return p.parse_args(argv)


def run_excerpts(lib: Library, enc: Any, data: Path, perfs: list[dict[str, Any]], plan: list[Excerpt],
                 hop: float, sequence_weight: float = 0.0, dump: list[Any] | None = None,
                 followed: int = CANDIDATES) -> list[ExcerptResult]:  # fmt: skip
    by_key = {(work_id(p["folder"]), p["performer"]): p for p in perfs}
    results: list[ExcerptResult] = []
    t0 = time.perf_counter()
    done_perfs: list[str] = []
    for ex in plan:
        p = by_key[(ex.folder, ex.performer)]
        audio = read_excerpt(data / p["audio"], ex.start_s, ex.length_s)
        rank, top1, tti = stream(lib, enc, audio, p["work"], hop, sequence_weight, dump, followed)
        results.append(ExcerptResult(p["work"], p["folder"], p["performer"], ex.length_s, ex.start_s, rank, top1,
                                     finite_or_none(tti)))  # fmt: skip
        key = f"{ex.folder}/{ex.performer}"
        if key not in done_perfs:
            done_perfs.append(key)
        elapsed = time.perf_counter() - t0
        eta = elapsed / len(results) * (len(plan) - len(results))
        log(f"{len(done_perfs)}/{len(perfs)} {key} {ex.length_s:g} s @ {ex.start_s:.1f}: rank {rank}, "
            f"time to identify {'never' if not np.isfinite(tti) else f'{tti:.1f} s'}; "
            f"{elapsed:.0f} s elapsed, about {eta:.0f} s left")  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    if not (args.model / "manifest.json").is_file():
        raise SystemExit(f"bench/realdev: no model at {args.model} (manifest.json)")
    set_doc = json.loads((args.data / "set.json").read_text())
    matches = load_matches(args.matches)
    lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    fp = model_fingerprint(args.model)[:12]
    realdev_folders = [args.data / "pieces" / w for w in sorted(set_doc["pieces"])]
    corpus_folders, excluded = corpus_test_folders(args.corpus, args.look, matched_corpus_pids(matches),
                                                   args.work / "sheets" / args.look)  # fmt: skip
    t0 = time.perf_counter()
    lib = build_library(
        realdev_folders + corpus_folders, args.model, args.work / f"library-{args.look}-{fp}", log
    )
    t_lib = time.perf_counter() - t0
    log(f"library: {len(lib.piece_ids)} pieces, {len(lib)} windows ({t_lib:.0f} s)")

    perfs = select_performances(set_doc["performances"], args.limit)
    plan = plan_excerpts(
        [(work_id(p["folder"]), p["performer"], p["seconds"]) for p in perfs], lengths, args.seed
    )
    log(f"streaming {len(plan)} excerpts of {len(perfs)} performances in hops of {args.hop} s")
    enc = load_model(args.model, threads=args.threads)
    t1 = time.perf_counter()
    dump: list[Any] | None = [] if args.dump else None
    results = run_excerpts(
        lib, enc, args.data, perfs, plan, args.hop, args.sequence_weight, dump, args.candidates
    )
    if args.dump:
        for d, r in zip(dump or [], results):
            d.update({"work": r.work, "length_s": r.length_s, "start_s": r.start_s})
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
    works_benchmarked = sorted({r.work for r in results})
    realdev_in_lib = [w for w in set_doc["pieces"] if w in lib.pieces]
    audio_s = sum(r.length_s for r in results)
    result = {
        "name": "real-performance validation (ASAP Mozart/Haydn, real performances as MIDI)",
        "per_length": rows,
        "per_length_works_not_in_training": unseen_rows,
        "median_seconds_to_identify": next((r["median_tti_s"] for r in rows if r["length_s"] == longest), None),
        "median_tti_length_s": longest,
        "n_works": len(works_benchmarked), "n_performances": len(perfs),
        "n_work_folders": set_doc["work_folders"],
        "limit": args.limit, "seed": args.seed, "lengths_s": lengths, "hop_s": args.hop,
        "sequence_weight": args.sequence_weight,
        "candidates": args.candidates,
        "library": {"pieces": len(lib.piece_ids), "windows": len(lib), "realdev_pieces": len(realdev_in_lib),
                    "corpus_test_pieces": len(lib.piece_ids) - len(realdev_in_lib), "corpus_look": args.look,
                    "corpus_excluded_as_realdev_works": excluded, "dir": str(lib.dir)},
        "works_with_corpus_match_in_training": sorted(trained_works),
        "corpus_splits_of_matches": splits,
        "per_work_longest": per_work(results, longest),
        "sheets": set_doc["sheets"], "audio": set_doc["audio"],
        "model": str(args.model), "model_sha256_12": fp, "corpus": str(args.corpus),
        "library_build_s": round(t_lib, 1), "identify_x_real_time": round(audio_s / max(t_id, 1e-9), 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
        "excerpts": [asdict(r) for r in results],
    }  # fmt: skip
    header = (f"real-performance validation: {len(works_benchmarked)} works, {len(perfs)} performances"
              f"{f' (--limit {args.limit})' if args.limit else ''}; library {len(lib.piece_ids)} pieces "
              f"({len(realdev_in_lib)} real-dev + {len(lib.piece_ids) - len(realdev_in_lib)} corpus test, "
              f"{args.look} look), {len(lib)} windows; hop {args.hop} s, seed {args.seed}")  # fmt: skip
    print_table(rows, header)
    print_table(
        unseen_rows,
        f"works with no corpus match in the training split ({len(trained_works)} works left out):",
    )
    print(f"wall time {result['wall_s']:.0f} s (library {t_lib:.0f} s, streaming {t_id:.0f} s, "
          f"{result['identify_x_real_time']:g}x real time)")  # fmt: skip
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
