#!/usr/bin/env python3
"""Which staff-line spacing lets a Verovio grand-staff system fit the 160 px sheet window?

Engraves a seeded random sample of the training corpora with the default look, measures each
system's height (top to bottom staff line) and each notehead's distance from its system's centre
in staff spaces, and prints, for candidate spacings, the share of noteheads whose centre lies in a
160 px band centred on the system. The result chose ``contract.STAFF_SPACE_PX``.

    python -m bench.corpus_scale [--corpora ../shared/corpora] [--n 24] [--json bench/results/corpus_scale.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from scoreid import contract as C
from synthesis.engrave import EngraveError, engrave

CANDIDATES = (9.0, 8.0, 7.5, 7.0, 6.5, 6.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", type=Path, default=Path("/work/shared/corpora"))
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("bench/results/corpus_scale.json"))
    args = ap.parse_args()
    files = sorted(str(p) for p in args.corpora.glob("*/*.krn"))
    random.seed(args.seed)
    files = random.sample(files, min(args.n, len(files)))
    heights, rel = [], []
    for f in files:
        try:
            e = engrave(f)
        except EngraveError as ex:
            print(f"skipped {f}: {ex}")
            continue
        sp = C.STAFF_SPACE_PX  # engraving scale; the ratios below are in staff spaces
        heights += [(s.bottom - s.top) / sp for s in e.systems]
        for n in e.notes:
            s = e.systems[n.system]
            rel.append(abs(n.y - (s.top + s.bottom) / 2) / sp)
    h, r = np.array(heights), np.array(rel)
    rows = []
    for space in CANDIDATES:
        half = C.SHEET_WINDOW_H / 2 / space
        rows.append(
            {
                "staff_space_px": space,
                "band_staff_spaces": round(2 * half, 1),
                "noteheads_in_band": round(float(np.mean(r <= half - 0.5)) * 100, 2),
            }
        )
    out: dict[str, Any] = {
        "pieces": len(files),
        "systems": len(h),
        "noteheads": len(r),
        "system_height_spaces": {
            "median": round(float(np.median(h)), 1),
            "p90": round(float(np.percentile(h, 90)), 1),
            "max": round(float(h.max()), 1),
        },
        "candidates": rows,
    }
    print(
        f"{out['pieces']} pieces, {out['systems']} systems, {out['noteheads']} noteheads; system height "
        f"(staff spaces) median {out['system_height_spaces']['median']}, p90 {out['system_height_spaces']['p90']}, "
        f"max {out['system_height_spaces']['max']}"
    )
    print(f"{'staff space px':>15} {'band (spaces)':>14} {'noteheads in band %':>20}")
    for row in rows:
        print(f"{row['staff_space_px']:>15} {row['band_staff_spaces']:>14} {row['noteheads_in_band']:>20}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
