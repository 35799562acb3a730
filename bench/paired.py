"""Paired comparison of ``bench.realdev`` runs on the same excerpts.

``python -m bench.paired BASE.json OTHER.json [...] [--size N] [--copies REGEX]``: for each excerpt
length, each run's top-1 and identity right over the excerpts every run holds (in-library streams at
library size N, each run's largest by default), and against the first run the excerpts it wins and
loses (top piece right in one run only) with a two-sided sign test — at 0.02 – 0.04 apart, two
models differ by a handful of excerpts and the test says whether that is more than chance.
``--copies REGEX``: a library that holds copies of a work under ids ending in REGEX (the scaled
pages of :mod:`bench.scaled_pages`, ``-x[0-9.]+$``): a top piece or identity that is such a copy
of the work counts as the work.
"""

from __future__ import annotations

import argparse
import json
import re
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


def right(e: dict[str, Any], key: str, copies: re.Pattern[str] | None) -> bool:
    """Whether the excerpt's top piece (``key`` "top1": its work ranked first) or its identity
    ("identity") is its work, or, with ``copies``, a copy of it."""
    got = e.get(key) or ""
    if key == "top1" and e.get("rank") == 1 or got == e["work"]:
        return True
    return copies is not None and bool(got) and copies.sub("", got) == e["work"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="bench.realdev JSONs; the first is the base")
    ap.add_argument("--size", type=int, default=None, help="library size (default: each run's largest)")
    ap.add_argument("--copies", default=None, help="regex of the id suffix of a work's copies")
    args = ap.parse_args(argv)
    copies = re.compile(args.copies) if args.copies else None
    runs = [(p.stem, json.loads(p.read_text())) for p in args.runs]
    sizes = [args.size or max(run["sizes"]) for _, run in runs]
    tables = [(name, excerpts(run, size)) for (name, run), size in zip(runs, sizes)]
    common = set.intersection(*(set(t) for _, t in tables))
    base_name, base = tables[0]
    for length in sorted({k[2] for k in common}):
        keys = [k for k in common if k[2] == length]
        print(
            f"library {'/'.join(map(str, sorted(set(sizes))))}, {length:g}-s excerpts, {len(keys)} in every run"
        )
        for name, t in tables:
            top = sum(right(t[k], "top1", copies) for k in keys) / len(keys)
            named = sum(right(t[k], "identity", copies) for k in keys) / len(keys)
            wins = sum(right(t[k], "top1", copies) and not right(base[k], "top1", copies) for k in keys)
            losses = sum(right(base[k], "top1", copies) and not right(t[k], "top1", copies) for k in keys)
            print(
                f"  {name:32s} top-1 {top:.3f}  identity right {named:.3f}  vs {base_name}: "
                f"+{wins} -{losses} (sign test p {sign_test(wins, losses):.2f})"
            )


if __name__ == "__main__":
    main()
