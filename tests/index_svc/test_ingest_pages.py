"""An ingested piece (its PDF or page images sent to the index service, no file on any disk) keeps
its page files in the library like a folder's piece: the page-turner draws its pages from the
library folder, wherever it is, pixel for pixel as the same files built from a folder."""

from __future__ import annotations

import shutil

import numpy as np

from index_svc.ingest import ingest
from index_svc.library import ServedLibrary
from scoreid.library.store import Library
from scoreid.sheet.pages import library_page
from web.pages import render_page


def test_an_ingested_piece_keeps_its_page_files_in_the_library(tmp_path, lib, sheets_dir):
    copy = tmp_path / "lib"
    shutil.copytree(lib, copy)
    served = ServedLibrary.open(copy, "test")
    pngs = [f.read_bytes() for f in sorted((sheets_dir / "joplin-maple-leaf").glob("page*.png"))]
    pdf = (sheets_dir / "chopin-mazurka-6-2" / "score.pdf").read_bytes()
    assert ingest(served, "maple-again", "Maple Leaf Rag", "", b"", pngs) > 0
    assert ingest(served, "mazurka-again", "Mazurka", "", pdf, []) > 0
    pairs = {"maple-again": "joplin-maple-leaf", "mazurka-again": "chopin-mazurka-6-2"}
    opened = Library.open(copy)
    for new in pairs:
        entry = served.library.pieces[new]
        assert entry == opened.pieces[new] and entry["source"] == f"ingest:{new}"
        sent = pngs if new == "maple-again" else [pdf]  # one copy of each file sent
        assert sorted({(copy / pg["stored"]["path"]).read_bytes() for pg in entry["pages"]}) == sorted(sent)
    pngs_before = {
        (pid, k): render_page(opened, pid, k)
        for pid in pairs
        for k in range(len(opened.pieces[pid]["pages"]))
    }
    moved = tmp_path / "elsewhere" / "lib"
    shutil.move(copy, moved)
    again = Library.open(moved)
    for new, built in pairs.items():
        for k, pg in enumerate(again.pieces[new]["pages"]):
            img = library_page(pg, lib_dir=moved, source=again.pieces[new]["source"])
            assert np.array_equal(img, library_page(again.pieces[built]["pages"][k], lib_dir=moved))
            assert render_page(again, new, k) == pngs_before[(new, k)] == render_page(again, built, k)
