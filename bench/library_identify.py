"""Benchmark: library build speed (pages/s) and streaming identification speed (x real time).

    python -m bench.library_identify --model models/default [--pieces 10] [--json out.json]

Engraves demo pieces (music21 corpus, cached, not timed), builds a library from their page
images (timed: staff-system detection + cutting, and sheet embedding, separately), then streams a
held-out performance through ``Identifier`` in hops of ``--hop`` s (timed). Prints a table and writes JSON.
Speeds depend on the model's architecture, not on its weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from scoreid import contract as C
from scoreid.identify.engine import DEFAULT_HOP_S
from scoreid.identify.stream import Identifier
from scoreid.inference import load_model
from scoreid.library.build import add_folder, cut_piece, open_or_create
from scoreid.library.store import Library, write_index
from scoreid.sheet.pages import page_files
from synthesis.demo_data import DEMO_PIECES, engrave_piece, notes_of, piece_id, shifted_performance


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--pieces", type=int, default=10)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "scoreid-bench-sheets")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    srcs = list(DEMO_PIECES[: args.pieces])
    for s in srcs:
        if not (args.cache / piece_id(s) / "piece.json").exists():
            engrave_piece(s, args.cache / piece_id(s))
    folders = [args.cache / piece_id(s) for s in srcs]
    n_pages = sum(len(page_files(f)) for f in folders)

    t0 = time.perf_counter()
    for f in folders:
        cut_piece(f, page_files(f), lambda m: None)
    t_detect = time.perf_counter() - t0

    enc = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        lib_dir = Path(tmp) / "lib"
        index = open_or_create(lib_dir, enc, args.model, None)
        t0 = time.perf_counter()
        for f in folders:
            add_folder(index, lib_dir, f, enc, lambda m: None)
        t_build = time.perf_counter() - t0
        write_index(lib_dir, index)
        lib = Library.open(lib_dir)

        audio = shifted_performance(notes_of(folders[0]), tempo_factor=1.25, seed=1).audio
        audio = audio[: int(args.seconds * C.SAMPLE_RATE)]
        ident = Identifier(lib, enc, hop_s=args.hop)
        chunk = int(args.hop * C.SAMPLE_RATE)
        t0 = time.perf_counter()
        for i in range(0, len(audio), chunk):
            ident.push(audio[i : i + chunk])
        ident.finish()
        t_ident = time.perf_counter() - t0
    secs = len(audio) / C.SAMPLE_RATE
    res = {
        "pieces": len(folders),
        "pages": n_pages,
        "windows": len(lib),
        "stride": lib.stride,
        "detect_s": round(t_detect, 2),
        "build_s": round(t_build, 2),
        "detect_pages_per_s": round(n_pages / t_detect, 2),
        "build_pages_per_s": round(n_pages / t_build, 2),
        "audio_s": round(secs, 1),
        "hop_s": args.hop,
        "identify_s": round(t_ident, 2),
        "identify_x_realtime": round(secs / t_ident, 1),
        "hop_latency_ms": round(1000 * t_ident / ident.n_windows, 1),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "model": str(args.model),
    }
    print(f"{'measure':32s} value")
    for k in (
        "pieces",
        "pages",
        "windows",
        "detect_pages_per_s",
        "build_pages_per_s",
        "audio_s",
        "identify_x_realtime",
        "hop_latency_ms",
    ):
        print(f"{k:32s} {res[k]}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
