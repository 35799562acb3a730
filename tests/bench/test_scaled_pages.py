"""bench.scaled_pages: a piece's pages at another width, height kept, title marked, skipped once done."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bench.scaled_pages import main


def test_pages_are_scaled_in_width_only(tmp_path):
    src = tmp_path / "pieces" / "bach.x"
    src.mkdir(parents=True)
    Image.fromarray(np.full((50, 80), 255, np.uint8)).save(src / "p1.png")
    Image.fromarray(np.zeros((50, 40), np.uint8)).save(src / "p2.png")
    (src / "piece.json").write_text(json.dumps({"composer": "Bach", "title": "X"}))
    out = tmp_path / "out"
    assert main(["--pieces", str(tmp_path / "pieces"), "--out", str(out), "--scales", "0.75,1.5"]) == 0
    for s, w1, w2 in (("0.75", 60, 30), ("1.5", 120, 60)):
        d = out / "pieces" / f"bach.x~x{s}"
        assert Image.open(d / "p1.png").size == (w1, 50) and Image.open(d / "p2.png").size == (w2, 50)
        assert json.loads((d / "piece.json").read_text()) == {"composer": "Bach", "title": f"X (x{s})"}
    before = (out / "pieces" / "bach.x~x1.5" / "p1.png").stat().st_mtime_ns
    main(["--pieces", str(tmp_path / "pieces"), "--out", str(out), "--scales", "1.5"])
    assert (out / "pieces" / "bach.x~x1.5" / "p1.png").stat().st_mtime_ns == before
