"""Benchmark: what one hop of a session costs the aggregator — the engine step and its state.

``python -m bench.engine_cost [--pieces 200] [--piece-windows 200 600 2000] [--candidates 5 10 20] [--hops 200] [--out FILE]``

Each sounding hop the aggregator reads the session's engine state from Redis, restores it
(:meth:`scoreid.identify.engine.SessionEngine.from_bytes` — skipped when this process wrote the
version Redis holds, the common case), runs :meth:`~scoreid.identify.engine.SessionEngine.vote`
(tally, follower of the top 5 candidates, confidence, positions) and serialises it again
(:meth:`~scoreid.identify.engine.SessionEngine.to_bytes`) for the compare-and-set. Measured without
Redis on a synthetic library (``--pieces`` pieces of N random unit windows, written in the library
format) with a stream that plays one piece with noise: median ms per hop of each part and the
state's size, for pieces of each length in ``--piece-windows`` (the follower's work and the state
grow with the candidates' windows, not with the library). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.libwriter import unit_rows, write_core_library
from bench.report import cpu_name, write_result
from scoreid.identify.engine import DEFAULT_HOP_S, TOP_K, EngineSettings, SessionEngine
from scoreid.library.store import Library
from scoreid.search.exact import ExactIndex

ROOT = Path(__file__).resolve().parents[1]


def measure(pieces: int, windows: int, hops: int, seed: int = 0, candidates: int = 5) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        lib = Library.open(
            write_core_library(
                Path(tmp) / "lib", {f"p{i:04d}": unit_rows(rng, windows) for i in range(pieces)}
            )
        )
    index = ExactIndex(lib.search_vectors)
    s, e = lib.rows["p0003"]
    eng = SessionEngine(lib, EngineSettings(candidates=candidates))
    parts: dict[str, list[float]] = {"from_bytes": [], "vote": [], "to_bytes": []}
    blob = eng.to_bytes()
    for k in range(hops):
        v = lib.vectors[s + k % (e - s)] + rng.normal(scale=0.1, size=32).astype(np.float32)
        v = (v / np.linalg.norm(v)).astype(np.float32)
        (hits,) = lib.nearest(index, v, TOP_K)
        t0 = time.perf_counter()
        eng = SessionEngine.from_bytes(lib, blob)
        t1 = time.perf_counter()
        eng.vote(DEFAULT_HOP_S * (k + 1), v, hits)
        t2 = time.perf_counter()
        blob = eng.to_bytes()
        t3 = time.perf_counter()
        for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
            parts[name].append(dt * 1000)
    out = {name: float(np.median(v)) for name, v in parts.items()}
    out["state_kb"] = len(blob) / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pieces", type=int, default=200)
    ap.add_argument("--piece-windows", type=int, nargs="+", default=[200, 600, 2000])
    ap.add_argument("--hops", type=int, default=200)
    ap.add_argument("--candidates", type=int, nargs="+", default=[5], help="followed pieces (EngineSettings)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine_cost.json")
    args = ap.parse_args(argv)
    rows = []
    cpu = cpu_name()
    print(f"session engine cost per hop, {args.pieces} pieces, {cpu}")
    print(
        f"{'windows/piece':>13} | {'followed':>8} | {'from_bytes ms':>13} | {'vote ms':>8} | {'to_bytes ms':>11} "
        f"| {'state KB':>8}"
    )
    for n in args.piece_windows:
        for c in args.candidates:
            r = {"piece_windows": n, "candidates": c, **measure(args.pieces, n, args.hops, candidates=c)}
            rows.append(r)
            print(
                f"{n:>13} | {c:>8} | {r['from_bytes']:>13.3f} | {r['vote']:>8.3f} | {r['to_bytes']:>11.3f} "
                f"| {r['state_kb']:>8.1f}"
            )
    write_result(args.out, {"cpu": cpu, "pieces": args.pieces, "hops": args.hops, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
