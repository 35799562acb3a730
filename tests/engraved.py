"""Session fixtures with engraved sheets (imported by ``tests/conftest.py`` for every test folder).

Sheet pages are engraved at test time: Verovio SVG pages with the staff systems known from the SVG.

``engrave_pages(source, ...)`` engraves a music21-corpus piece (or any file Verovio reads) with
Verovio, rasterises each page with ``rsvg-convert`` at a chosen width, and returns the grey pages
with the true system boxes (union of each system's staff-line paths) in raster px.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_PATH = re.compile(r'<path d="M(-?\d+) (-?\d+) L(-?\d+) (-?\d+)"')


@dataclass
class EngravedPage:
    image: np.ndarray  # grey uint8
    systems: list[tuple[float, float, float, float]]  # (top, bottom, left, right) raster px
    svg: str


def svg_systems(svg: str, px_per_unit: float) -> list[tuple[float, float, float, float]]:
    """True system boxes from a Verovio SVG page: the union of each system's staff-line paths."""
    m = re.search(r'class="definition-scale"[^>]*viewBox="0 0 (\d+) (\d+)"', svg)
    outer = re.search(r'<svg viewBox="0 0 (\d+) (\d+)"', svg)
    assert m and outer
    inner_to_outer = float(outer.group(1)) / float(m.group(1))
    margin = re.search(r'class="page-margin" transform="translate\((-?\d+), (-?\d+)\)"', svg)
    assert margin
    mx, my = float(margin.group(1)), float(margin.group(2))
    boxes = []
    for chunk in svg.split('class="system"')[1:]:
        ys, xs = [], []
        for staff in chunk.split('class="staff"')[1:]:
            # staff lines are the first horizontal paths of each staff group
            for p in _PATH.finditer(staff[:2000]):
                x0, y0, x1, y1 = (float(v) for v in p.groups())
                if y0 == y1 and x1 - x0 > 500:
                    ys.append(y0)
                    xs += [x0, x1]
        if ys:
            f = inner_to_outer * px_per_unit
            boxes.append(((min(ys) + my) * f, (max(ys) + my) * f, (min(xs) + mx) * f, (max(xs) + mx) * f))
    return boxes


def verovio_svgs(
    source: str, scale: int = 40, font: str = "Leipzig", page_w: int = 2100, page_h: int = 2970
) -> list[str]:
    import verovio
    from music21 import converter, corpus

    tk = verovio.toolkit()
    tk.setOptions(
        {
            "pageWidth": page_w,
            "pageHeight": page_h,
            "scale": scale,
            "font": font,
            "xmlIdSeed": 1,
            "svgViewBox": True,
            "adjustPageHeight": False,
            "footer": "none",
            "breaks": "auto",
        }
    )
    path = Path(source)
    if not path.exists():
        path = Path(str(corpus.getWork(source)))
    if path.suffix in (".krn", ".musicxml", ".xml", ".mei"):
        ok = tk.loadFile(str(path))
    else:  # .mxl and others: convert through music21
        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / "score.musicxml"
            converter.parse(str(path)).write("musicxml", xml)
            ok = tk.loadFile(str(xml))
    assert ok, f"verovio could not load {source}"
    return [tk.renderToSVG(i + 1) for i in range(tk.getPageCount())]


def rasterise(svg: str, width: int) -> np.ndarray:
    exe = shutil.which("rsvg-convert")
    if exe is None:
        pytest.fail("rsvg-convert is not installed; run ./setup.sh (librsvg2-bin)")
    res = subprocess.run(
        [exe, "-w", str(width), "-b", "white", "-f", "png"],
        input=svg.encode(),
        capture_output=True,
        check=True,
    )
    import io

    return np.asarray(Image.open(io.BytesIO(res.stdout)).convert("L"), np.uint8)


def engrave_pages(source: str, width: int = 1240, **opts) -> list[EngravedPage]:
    out = []
    for svg in verovio_svgs(source, **opts):
        outer_w = float(re.search(r'<svg viewBox="0 0 (\d+) (\d+)"', svg).group(1))  # type: ignore[union-attr]
        img = rasterise(svg, width)
        out.append(EngravedPage(img, svg_systems(svg, width / outer_w), svg))
    return out


@pytest.fixture(scope="session")
def engrave():
    return engrave_pages


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """A randomly initialised model exported in the test (a plumbing fixture, never shipped)."""
    import torch

    from scoreid.models import CrossModalNet
    from trainer.export import export_model

    torch.manual_seed(0)
    net = CrossModalNet().eval()
    out = tmp_path_factory.mktemp("random-model")
    export_model(
        net, out, training={"preset": "random-init-test-fixture"}, tensorrt=False, log=lambda s: None
    )
    return out


@pytest.fixture(scope="session")
def sheets_dir(tmp_path_factory) -> Path:
    """A folder of three pieces as a user would have it: PNG pages, a PDF, a piece.json."""
    import json

    root = tmp_path_factory.mktemp("sheets")
    for pid, src in (
        ("schoenberg-19-2", "schoenberg/opus19/movement2"),
        ("chopin-mazurka-6-2", "chopin/mazurka06-2"),
        ("joplin-maple-leaf", "joplin/maple_leaf_rag"),
    ):
        d = root / pid
        d.mkdir()
        pages = engrave_pages(src, width=1240)[:2]
        if pid.startswith("chopin"):  # as a 2-page PDF
            ims = [Image.fromarray(p.image) for p in pages]
            ims[0].save(d / "score.pdf", save_all=True, append_images=ims[1:], resolution=150.0)
        else:
            for i, p in enumerate(pages):
                Image.fromarray(p.image).save(d / f"page{i + 1}.png")
    (root / "joplin-maple-leaf" / "piece.json").write_text(
        json.dumps({"title": "Maple Leaf Rag", "composer": "Scott Joplin"})
    )
    return root


@pytest.fixture(scope="session")
def lib(tmp_path_factory, sheets_dir, random_model) -> Path:
    """``sheets_dir`` built into a library by ``scoreid library build`` with ``random_model``
    (shared by the CLI tests; none of them changes it)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("lib") / "lib"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "library",
            "build",
            str(sheets_dir),
            "--out",
            str(out),
            "--model",
            str(random_model),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return out
