"""Paired comparison of ``bench.realdev`` runs on the same excerpts.

``python -m bench.paired BASE.json OTHER.json [...] [--size N]``: for each excerpt length, each run's
top-1 and identity right over the excerpts every run holds (in-library streams at library size N,
the largest by default), and against the first run the excerpts it wins and loses (top piece right
in one run only) with a two-sided sign test — at 0.02 – 0.04 apart, two models differ by a handful
of excerpts and the test says whether that is more than chance.
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path
from typing import Any


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test p-value of ``wins`` against ``losses`` (ties dropped)."""
    n, k = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def excerpts(run: dict[str, Any], size: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The run's in-library excerpts at library ``size``, keyed by work, performer, length, start."""
    return {
        (e["work"], e["performer"], e["length_s"], e["start_s"]): e
        for e in run["excerpts"]
        if e["in_library"] and e["size"] == size
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="bench.realdev JSONs; the first is the base")
    ap.add_argument("--size", type=int, default=None, help="library size (default: the largest)")
    args = ap.parse_args(argv)
    runs = [(p.stem, json.loads(p.read_text())) for p in args.runs]
    size = args.size or max(runs[0][1]["sizes"])
    tables = [(name, excerpts(run, size)) for name, run in runs]
    common = set.intersection(*(set(t) for _, t in tables))
    base_name, base = tables[0]
    for length in sorted({k[2] for k in common}):
        keys = [k for k in common if k[2] == length]
        print(f"library {size}, {length:g}-s excerpts, {len(keys)} in every run")
        for name, t in tables:
            top = sum(t[k]["rank"] == 1 for k in keys) / len(keys)
            right = sum(t[k]["identity"] == t[k]["work"] for k in keys) / len(keys)
            wins = sum(t[k]["rank"] == 1 and base[k]["rank"] != 1 for k in keys)
            losses = sum(base[k]["rank"] == 1 and t[k]["rank"] != 1 for k in keys)
            print(
                f"  {name:32s} top-1 {top:.3f}  identity right {right:.3f}  vs {base_name}: "
                f"+{wins} -{losses} (sign test p {sign_test(wins, losses):.2f})"
            )


if __name__ == "__main__":
    main()
