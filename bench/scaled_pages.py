"""Horizontally scaled copies of a page set: the same music at another note spacing.

    python -m bench.scaled_pages --pieces /work/data/realdev/pieces --out DIR --scales 0.75,1.5

For every piece folder (``piece.json`` and its page images ``p*.png``) writes ``DIR/pieces/<id>~x<S>``
with each page's width scaled by S (Lanczos; height kept, so the staff spacing and hence the library's
render scale are unchanged) — a sheet window of the copy then spans 1/S times the music of one on the
original. ``python -m bench.realdev --distractors DIR`` streams against the library with the copies
(ids ``<id>-x<S>``), and ``python -m bench.paired --copies='-x[0-9.]+$'`` counts a copy ranked first as
its work: whether matching each piece at several note spacings finds music the model misses at one
(RESULTS.md "The sheet at three note spacings"). A folder already written is skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image


def scale_piece(folder: Path, out_root: Path, scale: float) -> Path:
    """``folder``'s pages with their width scaled by ``scale`` under ``out_root/<id>~x<scale>``."""
    out = out_root / f"{folder.name}~x{scale:g}"
    if (out / "piece.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for page in sorted(folder.glob("p*.png")):
        with Image.open(page) as im:
            w = max(1, round(im.width * scale))
            im.resize((w, im.height), Image.Resampling.LANCZOS).save(out / page.name)
    meta = json.loads((folder / "piece.json").read_text())
    meta["title"] = f"{meta.get('title') or folder.name} (x{scale:g})"
    (out / "piece.json").write_text(json.dumps(meta))  # last: a folder with it is finished
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pieces", type=Path, required=True, help="folders of piece.json + p*.png")
    p.add_argument("--out", type=Path, required=True, help="writes OUT/pieces/<id>~x<S>")
    p.add_argument("--scales", default="0.75,1.5", help="width factors, e.g. 0.75,1.5")
    args = p.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",") if s.strip()]
    if not scales or min(scales) <= 0:
        p.error(f"scales must be positive numbers, got {args.scales!r}")
    folders = sorted(f.parent for f in args.pieces.glob("*/piece.json"))
    for i, folder in enumerate(folders, 1):
        for s in scales:
            scale_piece(folder, args.out / "pieces", s)
        print(f"\rscaled pages: {i}/{len(folders)} pieces", end="", flush=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
