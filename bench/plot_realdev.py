"""A picture of real-performance validation runs: piece top-1 against excerpt length, one line per
model and setting, the median time to identify in the legend.

    python -m bench.plot_realdev --series "LABEL=SW.json@W" [--series "LABEL=REALDEV.json" ...]
        --out FILE.png [--title TEXT] [--target 20:0.90 --target 30:0.95]

Each series is one weight ``W`` of a ``bench/sequence_weight.py`` result (``SW.json``: the rows of
every weight, from one dumped ``bench/realdev.py`` run), or, without ``@W``, a ``bench/realdev.py``
result as it ran (its ``per_length`` rows). The targets are drawn as crosses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def parse_series(text: str) -> tuple[str, Path, str | None]:
    label, _, rest = text.partition("=")
    head, at, tail = rest.rpartition("@")
    path, weight = (head, tail) if at else (rest, None)
    if not (label and path and (weight or not at)):
        raise argparse.ArgumentTypeError(f"a series is LABEL=FILE@WEIGHT or LABEL=FILE, got {text!r}")
    return label, Path(path), weight


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=parse_series, action="append", required=True)
    ap.add_argument("--target", action="append", default=[], help="LENGTH:TOP1, e.g. 20:0.90")
    ap.add_argument("--title", default="real-performance validation (ASAP Mozart/Haydn, 60 performances)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, path, weight in args.series:
        doc = json.loads(path.read_text())
        if weight is None:
            if "per_length" not in doc:
                raise SystemExit(
                    f"{path}: not a bench/realdev.py result (no per_length); name a weight with @W"
                )
            rows = doc["per_length"]
        else:
            rows_by_w = doc["rows"]
            key = next((k for k in rows_by_w if float(k) == float(weight)), None)
            if key is None:
                raise SystemExit(f"{path}: no weight {weight} (has {', '.join(rows_by_w)})")
            rows = rows_by_w[key]
        tti = rows[-1]["median_tti_s"]
        ax.plot(
            [r["length_s"] for r in rows],
            [r["top1"] for r in rows],
            marker="o",
            label=f"{label} (median TTI {'never' if tti is None else f'{tti:.1f} s'})",
        )
    for t in args.target:
        length, _, top1 = t.partition(":")
        ax.plot([float(length)], [float(top1)], "kx", markersize=10)
    if args.target:
        ax.plot([], [], "kx", label="target")
    ax.set_xlabel("excerpt length (s)")
    ax.set_ylabel("piece top-1")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(args.title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
