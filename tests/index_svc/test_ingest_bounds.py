"""Ingest refuses hostile requests before anything is decoded or written: ids that are not exactly
an id (trailing newline, a name that maps onto another piece), markup or control characters in
titles, too many pages, too many pixels; and an ingest never replaces an existing piece."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.libwriter import unit_rows, write_core_library
from index_svc.ingest import MAX_PAGES, IngestError, ingest
from index_svc.library import ServedLibrary


@pytest.fixture
def lib(tmp_path) -> ServedLibrary:
    rng = np.random.default_rng(0)
    d = write_core_library(
        tmp_path / "lib", {"chopin-mazurka06-2": unit_rows(rng, 40), "bach": unit_rows(rng, 30)}
    )
    return ServedLibrary.open(d, "test")


def png(w: int, h: int, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 255).save(buf, "PNG")
    return buf.getvalue()


def pdf_of(pages: int) -> bytes:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for _ in range(pages):
        doc.new_page(595, 842)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


CASES = {
    "trailing newline": (dict(piece="chopin-mazurka06-2\n"), "piece id"),
    "maps onto another id": (dict(piece="bach-"), "piece id"),
    "path": (dict(piece="../bach"), "piece id"),
    "existing": (dict(piece="bach"), "already in library"),
    "markup title": (dict(piece="new", title="<img src=x onerror=alert(1)>"), "title"),
    "control characters": (dict(piece="new", composer="a\x00b"), "composer"),
    "long title": (dict(piece="new", title="x" * 201), "title"),
    "too many PDF pages": (dict(piece="new", pdf=pdf_of(MAX_PAGES + 1)), "pages"),
    "huge image": (dict(piece="new", pages=[png(9000, 9000, "1")]), "pixels"),
    "not an image": (dict(piece="new", pages=[b"\x89PNG\r\n\x1a\n" + b"junk"]), "readable image"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_ingest_is_refused_and_changes_nothing(lib, name):
    kw, words = CASES[name]
    args = {"piece": "", "title": "", "composer": "", "pdf": b"", "pages": [], **kw}
    before = (lib.path / "library.json").read_bytes(), sorted(p.name for p in (lib.path / "pieces").iterdir())
    with pytest.raises(IngestError, match=words):
        ingest(lib, args["piece"], args["title"], args["composer"], args["pdf"], args["pages"])
    after = (lib.path / "library.json").read_bytes(), sorted(p.name for p in (lib.path / "pieces").iterdir())
    assert after == before and len(lib.piece_ids) == 2


def test_a_library_whose_piece_ids_are_paths_is_refused(tmp_path):
    import json

    from scoreid.library.store import Library, LibraryError

    d = write_core_library(tmp_path / "lib", {"ok": unit_rows(np.random.default_rng(1), 10)})
    index = json.loads((d / "library.json").read_text())
    index["pieces"]["../../etc/x"] = index["pieces"]["ok"]
    (d / "library.json").write_text(json.dumps(index))
    with pytest.raises(LibraryError, match="invalid piece ids"):
        Library.open(d)
