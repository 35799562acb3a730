"""Benchmark: library ingest speed (pages/s) of ``scoreid library build`` with 1 and all cores.

    python -m bench.library_build --data DATA/corpus [--pieces 10 200] [--workers 1 2]
        [--model models/default] [--out bench/results/library_build.json]

Stages the first N pieces of the corpus (sorted ids, every split; their ``shifted`` page images,
or the first look there is) as a sheets folder — one sub-folder of page images and a
``piece.json`` per piece, what a user gives the command — then times the command itself
(``python -m cli library build SHEETS --out LIB --workers W``, a fresh library each time:
staff-system detection, cutting, sheet embedding, the index) for every N and W. Reports pages,
systems and windows, wall seconds, pages/s and the speed-up over one worker, and whether every
worker count wrote the same library (``library.json`` and the piece files byte for byte). Prints
a table and writes JSON with the CPU. Staging is not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.identify import write_sheet_folder
from bench.report import cpu_name, write_result
from trainer.corpus.store import Corpus

ROOT = Path(__file__).resolve().parents[1]


def stage(corpus: Corpus, n: int, out: Path) -> int:
    """The first ``n`` pieces with page images as a sheets folder; returns the number of pages."""
    pages = 0
    made = 0
    for pid in corpus.ids():
        if made == n:
            break
        piece = corpus.load(pid)
        renders = sorted(piece.renders, key=lambda r: r.condition != "shifted")
        render = next((r for r in renders if r.page_paths), None)
        if render is None:
            continue
        write_sheet_folder(out / pid, pid, piece.meta, render.page_paths)
        pages += len(render.page_paths)
        made += 1
    if made < n:
        raise SystemExit(f"bench/library_build: the corpus has only {made} pieces with pages")
    return pages


def digest(lib: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in lib.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(lib)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="corpus directory (trainer/run.py corpus build)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--pieces", type=int, nargs="+", default=[10, 200])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "scoreid-bench-ingest"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "library_build.json")
    args = ap.parse_args(argv)
    corpus = Corpus(args.data)
    rows = []
    cpu = cpu_name()
    print(f"library ingest, {cpu}, model {args.model}")
    print(
        f"{'pieces':>6} | {'pages':>5} | {'workers':>7} | {'seconds':>8} | {'pages/s':>7} | {'speed-up':>8} | same library"
    )
    for n in args.pieces:
        sheets = args.work / f"sheets-{n}"
        if sheets.exists():
            shutil.rmtree(sheets)
        pages = stage(corpus, n, sheets)
        base_s, base_digest = None, None
        for w in args.workers:
            lib = args.work / f"library-{n}-w{w}"
            if lib.exists():
                shutil.rmtree(lib)
            t0 = time.perf_counter()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "library",
                    "build",
                    str(sheets),
                    "--out",
                    str(lib),
                    "--model",
                    str(args.model),
                    "--workers",
                    str(w),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(f"bench/library_build: the build failed: {r.stderr.strip()[-500:]}")
            index = json.loads((lib / "library.json").read_text())
            windows = sum(int(p.get("n_windows", 0)) for p in index["pieces"].values())
            d = digest(lib)
            base_s = base_s or dt
            base_digest = base_digest or d
            row = {
                "pieces": n,
                "pages": pages,
                "workers": w,
                "seconds": round(dt, 2),
                "pages_per_s": round(pages / dt, 3),
                "speedup": round(base_s / dt, 2),
                "windows": windows,
                "same_library_as_first": d == base_digest,
            }
            rows.append(row)
            print(
                f"{n:>6} | {pages:>5} | {w:>7} | {dt:>8.1f} | {pages / dt:>7.2f} | {base_s / dt:>7.2f}x | "
                f"{'yes' if d == base_digest else 'NO'}",
                flush=True,
            )
            shutil.rmtree(lib)
    write_result(
        args.out,
        {
            "cpu": cpu,
            "model": str(args.model),
            "rows": rows,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
