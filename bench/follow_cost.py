"""Benchmark: the score follower's cost per hop against the library's size.

``python -m bench.follow_cost [--windows 10000 100000 1000000] [--piece-windows 400] [--hops 200]``

The follower (:class:`scoreid.identify.follow.CandidateFollower`) updates only the tally's top
candidates (5), so its cost per hop should not grow with the library. Measured here with a
synthetic library of N random unit vectors in pieces of ``--piece-windows`` windows: per hop, one
audio embedding, the similarities to the candidates' windows and the filter update of each kind
(``guard``, ``tempo``, ``hmm``, ``best``); the candidate set changes now and then (a new candidate is caught up
on the buffered windows). For comparison, the follower before it updated every library row every
hop (an HMM over all N windows, reimplemented here as it was: ``whole-library hmm``), timed over
fewer hops at the larger sizes. Prints a table (ms per hop, best of ``--rounds``) and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from bench.report import cpu_name, write_result
from scoreid.identify.engine import DEFAULT_HOP_S
from scoreid.identify.follow import KINDS, CandidateFollower

ROOT = Path(__file__).resolve().parents[1]


def whole_library_hmm_step(
    alpha: np.ndarray, emit: np.ndarray, bounds: np.ndarray, max_step: int
) -> np.ndarray:
    """One hop of the former follower: forward steps 0..J within each piece, a jump anywhere in
    the piece, then normalisation within each piece — over every row of the library."""
    n = len(alpha)
    w = np.exp(-np.arange(max_step + 1) / max(1.0, max_step / 2.0))
    log_step = np.log(w / w.sum())
    piece_of = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    acc = np.full(n, -np.inf)
    for d in range(max_step + 1):
        shifted = np.full(n, -np.inf)
        shifted[d:] = alpha[: n - d] if d else alpha
        same = np.zeros(n, bool)
        same[d:] = piece_of[d:] == piece_of[: n - d] if d else True
        acc = np.logaddexp(acc, np.where(same, shifted + log_step[d], -np.inf))
    jump = np.empty(n)
    for s, e in zip(bounds[:-1], bounds[1:]):
        jump[s:e] = np.logaddexp.reduce(alpha[s:e]) - math.log(e - s)
    out = np.logaddexp(math.log(0.98) + acc, math.log(0.02) + jump) + emit
    for s, e in zip(bounds[:-1], bounds[1:]):
        out[s:e] -= np.logaddexp.reduce(out[s:e])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--piece-windows", type=int, default=400)
    p.add_argument("--hops", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "follow_cost.json")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for n in args.windows:
        vec = rng.normal(size=(n, 32)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        pw = args.piece_windows
        bounds = np.arange(0, n + 1, pw)
        if bounds[-1] != n:
            bounds = np.append(bounds, n)
        pids = [f"p{i}" for i in range(len(bounds) - 1)]
        lib_rows = {pid: (int(s), int(e)) for pid, s, e in zip(pids, bounds[:-1], bounds[1:])}
        strip_x = np.concatenate([np.arange(e - s) * 50.0 for s, e in lib_rows.values()])
        embs = rng.normal(size=(args.hops, 32)).astype(np.float32)
        embs /= np.linalg.norm(embs, axis=1, keepdims=True)

        def sims_of(pid: str, e: np.ndarray, lib_rows=lib_rows, vec=vec) -> np.ndarray:  # type: ignore[no-untyped-def]
            s, t = lib_rows[pid]
            return e @ vec[s:t].T

        row = {"windows": n, "pieces": len(pids)}
        for kind in KINDS:
            best = math.inf
            for _ in range(args.rounds):
                f = CandidateFollower(lib_rows, strip_x, 50.0, DEFAULT_HOP_S, kind=kind, max_candidates=5)
                t0 = time.perf_counter()
                for h in range(args.hops):
                    cands = [
                        pids[(h // 20 + j) % len(pids)] for j in range(5)
                    ]  # a new candidate every 20 hops
                    f.update(DEFAULT_HOP_S * (h + 1), embs[h], cands, sims_of)
                best = min(best, (time.perf_counter() - t0) / args.hops)
            row[f"{kind}_ms"] = round(best * 1e3, 3)
        hops_old = max(3, min(args.hops, 2_000_000 // n))
        alpha = np.zeros(n)
        t0 = time.perf_counter()
        for h in range(hops_old):
            alpha = whole_library_hmm_step(alpha, (vec @ embs[h]) / 0.1, bounds, 3)
        row["whole_library_hmm_ms"] = round((time.perf_counter() - t0) / hops_old * 1e3, 3)
        rows.append(row)
        print(f"{n} windows: {row}", file=sys.stderr, flush=True)
    result = {
        "rows": rows,
        "candidates": 5,
        "piece_windows": args.piece_windows,
        "hops": args.hops,
        "cpu": cpu_name(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(
        f"follower cost per hop (ms, one core; 5 candidates of {args.piece_windows} windows) on {result['cpu']}"
    )
    print("| library windows | " + " | ".join(KINDS) + " | whole-library hmm (before) |")
    print("|---:|" + "---:|" * (len(KINDS) + 1))
    for r in rows:
        kinds = " | ".join(f"{r[f'{k}_ms']:.2f}" for k in KINDS)
        print(f"| {r['windows']:,} | {kinds} | {r['whole_library_hmm_ms']:.1f} |")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
