"""Writes the README's example sheet folder: one PDF per piece, pages that look scanned.

    python docs/make_example_sheets.py OUT_DIR [--pieces N]

Each piece of the first N demo pieces (music21 corpus, public domain; the Chopin mazurka of
``tests/data`` first) is engraved with Verovio in the Leland font (not a training font), and its
pages are degraded like a scan — a small rotation, blur, grain, grey paper — and saved as one
multi-page PDF (150 dpi) plus a ``piece.json`` with title and composer. No symbolic data is kept:
``scoreid library build OUT_DIR`` sees only the PDFs, as it would a user's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli.commands.demo import DEMO_PIECE  # noqa: E402
from synthesis.demo_data import DEMO_PIECES, engrave_piece, piece_id  # noqa: E402


def scanned(page: Image.Image, rng: np.random.Generator) -> Image.Image:
    img = page.convert("L").rotate(float(rng.uniform(-1.5, 1.5)), resample=Image.BICUBIC, fillcolor=255)
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    x = np.asarray(img, np.float32) * 0.92 + 12 + rng.normal(0, 6, img.size[::-1])
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--pieces", type=int, default=8)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    sources = [DEMO_PIECE] + [s for s in DEMO_PIECES if s != DEMO_PIECE][: args.pieces - 1]
    for src in sources:
        folder = args.out / piece_id(src)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            engrave_piece(src, Path(tmp))
            info = json.loads((Path(tmp) / "piece.json").read_text())
            pages = [scanned(Image.open(p), rng) for p in sorted(Path(tmp).glob("*.png"))]
        pages[0].save(folder / "score.pdf", save_all=True, append_images=pages[1:], resolution=150.0)
        (folder / "piece.json").write_text(
            json.dumps({"title": info.get("title", src), "composer": info.get("composer", "")})
        )
        print(f"{folder}/score.pdf: {len(pages)} pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
