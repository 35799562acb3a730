"""A library folder is whole for its page images: built, moved or copied anywhere with its sheet
files deleted, it still draws every page pixel for pixel (``library_page``, the page-turner's
``/api/pieces/<piece>/pages/<k>``, ``library show``); a library built before it kept copies of its
page files still draws them from where they were, and ``library build`` on it keeps the copies
without embedding anything again; ``library remove`` deletes a piece's copies."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from scoreid.library import Library
from scoreid.sheet.pages import library_page

PIECES = ("chopin-mazurka-6-2", "joplin-maple-leaf")  # a 2-page PDF; two PNG pages


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def build(tmp_path: Path, sheets_dir: Path, random_model: Path) -> tuple[Path, Path]:
    """``PIECES`` copied to tmp_path/proj/sheets and built into tmp_path/proj/lib."""
    src, lib = tmp_path / "proj" / "sheets", tmp_path / "proj" / "lib"
    for pid in PIECES:
        shutil.copytree(sheets_dir / pid, src / pid)
    res = cli("library", "build", src, "--out", lib, "--model", random_model, "--workers", 1)
    assert res.returncode == 0, res.stderr
    return src, lib


def drawn(lib: Path) -> dict[tuple[str, int], np.ndarray]:
    """Every page of the library at ``lib`` as ``library_page`` draws it."""
    index = json.loads((lib / "library.json").read_text())
    return {
        (pid, k): library_page(pg, lib_dir=lib, source=e.get("source"))
        for pid, e in sorted(index["pieces"].items())
        for k, pg in enumerate(e["pages"])
    }


def served(lib: Path, random_model: Path) -> dict[tuple[str, int], bytes]:
    """Every page of the library at ``lib`` as the page-turner serves it."""
    from scoreid.identify.engine import EngineSettings
    from scoreid.inference import load_model
    from web.app import create_app
    from web.offline_session import OfflineBackend

    library = Library.open(lib)
    c = TestClient(create_app(library, OfflineBackend(library, load_model(random_model), EngineSettings())))
    out = {}
    for pid in library.piece_ids:
        for k in range(len(library.pieces[pid]["pages"])):
            r = c.get(f"/api/pieces/{pid}/pages/{k}")
            assert r.status_code == 200, r.text
            out[(pid, k)] = r.content
    return out


def test_a_library_moved_or_copied_anywhere_draws_its_pages_without_the_sheets(
    tmp_path, sheets_dir, random_model
):
    src, lib = build(tmp_path, sheets_dir, random_model)
    index = json.loads((lib / "library.json").read_text())
    for pid in PIECES:  # one copy of each page file, byte for byte, named by its contents
        for pg in index["pieces"][pid]["pages"]:
            data = (src / pid / pg["file"]).read_bytes()
            assert pg["stored"] == {
                "path": f"pages/{pid}/{hashlib.sha256(data).hexdigest()}{Path(pg['file']).suffix}",
                "bytes": len(data),
            }
            assert (lib / pg["stored"]["path"]).read_bytes() == data
    images, pngs = drawn(lib), served(lib, random_model)
    assert len(images) == 4
    res = cli("library", "show", lib, "chopin-mazurka-6-2", "--out", tmp_path / "before.png")
    assert res.returncode == 0, res.stderr

    moved, copied = tmp_path / "elsewhere" / "moved-lib", tmp_path / "copy" / "lib"
    shutil.copytree(lib, copied)
    shutil.move(lib, moved)
    shutil.rmtree(src)  # the sheets are gone
    for where in (moved, copied):
        after = drawn(where)
        assert after.keys() == images.keys()
        assert all(np.array_equal(after[k], images[k]) for k in images)  # pixel for pixel
    assert served(copied, random_model) == pngs
    res = cli("library", "show", moved, "chopin-mazurka-6-2", "--out", tmp_path / "after.png")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "after.png").read_bytes() == (tmp_path / "before.png").read_bytes()

    res = cli("library", "remove", copied, "joplin-maple-leaf")  # its copies go with it
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (copied / "pages").iterdir()) == ["chopin-mazurka-6-2"]
    assert drawn(copied).keys() == {("chopin-mazurka-6-2", 0), ("chopin-mazurka-6-2", 1)}


def test_an_old_library_still_draws_and_a_build_keeps_its_page_files_without_embedding(
    tmp_path, sheets_dir, random_model
):
    """An old library (absolute paths only, no ``pages/``) draws from the sheet files; moved together
    with them it finds them beside it; ``library build`` then keeps the copies (nothing re-embedded,
    the index replaced whole), after which the sheets may go."""
    src, lib = build(tmp_path, sheets_dir, random_model)
    images = drawn(lib)
    index = json.loads((lib / "library.json").read_text())
    for e in index["pieces"].values():
        for pg in e["pages"]:
            del pg["stored"]
    (lib / "library.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(lib / "pages")
    old = drawn(lib)
    assert all(np.array_equal(old[k], images[k]) for k in images)

    proj = tmp_path / "moved" / "proj"
    shutil.move(tmp_path / "proj", proj)  # sheets and library together; the recorded paths are gone
    src, lib = proj / "sheets", proj / "lib"
    moved = drawn(lib)
    assert all(np.array_equal(moved[k], images[k]) for k in images)
    npz = {p.name: p.stat().st_mtime_ns for p in (lib / "pieces").iterdir()}

    res = cli("library", "build", src, "--out", lib)
    assert res.returncode == 0, res.stderr
    assert "2 unchanged" in res.stdout and res.stderr.count("page files are now kept in the library") == 2
    assert {p.name: p.stat().st_mtime_ns for p in (lib / "pieces").iterdir()} == npz  # nothing embedded
    after = json.loads((lib / "library.json").read_text())
    assert all("stored" in pg for e in after["pieces"].values() for pg in e["pages"])
    assert {pid: {k: v for k, v in e.items() if k != "pages"} for pid, e in after["pieces"].items()} == {
        pid: {k: v for k, v in e.items() if k != "pages"} for pid, e in index["pieces"].items()
    }
    shutil.rmtree(src)
    kept = drawn(lib)
    assert all(np.array_equal(kept[k], images[k]) for k in images)
    res = cli("library", "build", tmp_path / "nowhere", "--out", lib)
    assert res.returncode != 0


def test_a_failed_copy_leaves_the_library_as_it_was(tmp_path, sheets_dir, random_model, monkeypatch):
    """Keeping the copies of a new piece's page files is part of adding it: when the index cannot be
    written, neither the piece's rows nor its copies stay; when a copy cannot be written, nothing is
    added."""
    import scoreid.library.store as store
    from scoreid.inference import load_model
    from scoreid.library.build import DEFAULT_STRIDE, new_index, piece_from_files

    lib = tmp_path / "lib"
    enc = load_model(random_model, "onnx")
    index = new_index(enc, random_model, DEFAULT_STRIDE)
    store.write_index(lib, index)
    files = [(f.name, f.read_bytes()) for f in sorted((sheets_dir / "joplin-maple-leaf").glob("*.png"))]
    piece = piece_from_files("p", files, enc, DEFAULT_STRIDE, index["model"]["sha256"], "P", "", print)
    before = sorted(p.relative_to(lib) for p in lib.rglob("*") if p.is_file())

    def full(*args, **kwargs):
        raise OSError("No space left on device")

    for name in ("write_index", "os.replace"):
        monkeypatch.setattr(store if name == "write_index" else store.os, name.split(".")[-1], full)
        with pytest.raises(OSError, match="No space"):
            store.store_new_piece(lib, piece)
        monkeypatch.undo()
        assert sorted(p.relative_to(lib) for p in lib.rglob("*") if p.is_file()) == before, name
        assert "stored" not in piece.entry["pages"][0]
    store.store_new_piece(lib, piece)
    assert Library.open(lib).piece_ids == ["p"] and len(list((lib / "pages" / "p").iterdir())) == 2


def test_no_page_copies_keeps_none_and_drops_a_rebuilt_pieces(tmp_path, sheets_dir, random_model):
    src, lib = build(tmp_path, sheets_dir, random_model)
    images = drawn(lib)
    (src / "joplin-maple-leaf" / "page2.png").touch()  # changed: built again, without copies
    res = cli("library", "build", src, "--out", lib, "--no-page-copies", "--workers", 2)
    assert res.returncode == 0 and "1 unchanged, 1 updated" in res.stdout, res.stdout + res.stderr
    index = json.loads((lib / "library.json").read_text())
    assert all("stored" not in pg for pg in index["pieces"]["joplin-maple-leaf"]["pages"])
    assert all("stored" in pg for pg in index["pieces"]["chopin-mazurka-6-2"]["pages"])
    assert sorted(p.name for p in (lib / "pages").iterdir()) == ["chopin-mazurka-6-2"]
    again = drawn(lib)  # from the sheet files
    assert all(np.array_equal(again[k], images[k]) for k in images)
