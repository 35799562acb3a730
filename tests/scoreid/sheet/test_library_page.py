"""Reading a page a library records again, deskewed as the build did (scoreid.sheet.pages.library_page):
from the library's own copy of its file (scoreid.library.store.save_page_files), checked before it is
decoded, else where the file was or has moved to."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoreid.sheet.deskew import rotate_page
from scoreid.sheet.pages import PageError, library_page


def test_a_recorded_page_is_read_once_and_deskewed_by_its_angle(tmp_path, monkeypatch):
    grey = np.full((120, 90), 255, np.uint8)
    grey[40:42, 10:80] = 0
    Image.fromarray(grey).save(tmp_path / "p1.png")
    entry = {"path": str(tmp_path / "p1.png"), "page": 0, "angle_deg": 1.5}
    files: dict = {}
    img = library_page(entry, files)
    assert np.array_equal(img, rotate_page(grey, -1.5)) and img.shape == grey.shape
    assert list(files) == [entry["path"]]
    (tmp_path / "p1.png").unlink()  # the next call takes the file's pages from ``files``
    assert np.array_equal(library_page(entry, files), img)
    with pytest.raises(PageError, match="no such file"):
        library_page(entry)


def test_a_page_that_cannot_be_read_is_a_page_error(tmp_path):
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "p.png")
    with pytest.raises(PageError, match="does not record"):
        library_page({"page": 0, "angle_deg": 0.0})
    with pytest.raises(PageError, match="has no page 3 any more"):
        library_page({"path": str(tmp_path / "p.png"), "page": 2, "angle_deg": 0.0})


# ------------------------------------------------------------------ the library's copies of page files


def page_png(path, seed: int = 0, size=(300, 200)) -> np.ndarray:
    grey = np.full(size, 255, np.uint8) - np.random.default_rng(seed).integers(0, 40, size).astype(np.uint8)
    grey[100:103, 20:180] = 0
    Image.fromarray(grey).save(path)
    return grey


def two_page_pdf(path) -> None:
    ims = [Image.fromarray(np.full((220, 170), v, np.uint8)) for v in (200, 90)]
    ims[0].save(path, save_all=True, append_images=ims[1:], resolution=72.0)


def test_a_page_is_drawn_from_the_librarys_copy_wherever_the_library_is(tmp_path):
    from scoreid.library.store import save_page_files

    src, lib = tmp_path / "sheets", tmp_path / "lib"
    src.mkdir()
    grey = page_png(src / "p1.png")
    entry = {"file": "p1.png", "path": str(src / "p1.png"), "page": 0, "angle_deg": 0.7, "size": [300, 200]}
    [stored] = save_page_files(lib, "a-piece", [entry], {"p1.png": src / "p1.png"}, print)
    data = (src / "p1.png").read_bytes()
    assert stored["stored"] == {
        "path": f"pages/a-piece/{hashlib.sha256(data).hexdigest()}.png",
        "bytes": len(data),
    }
    assert (lib / stored["stored"]["path"]).read_bytes() == data
    want = rotate_page(grey, -0.7)
    shutil.rmtree(src)  # the sheets are gone; the library is moved
    moved = tmp_path / "elsewhere" / "lib"
    shutil.move(lib, moved)
    files: dict = {}
    assert np.array_equal(library_page(stored, files, lib_dir=moved), want)
    assert list(files) == [str(moved / stored["stored"]["path"])]
    assert np.array_equal(library_page(stored, lib_dir=moved), want)
    with pytest.raises(PageError, match="no such file"):  # without the library folder: only the path
        library_page(stored)


def test_a_damaged_or_malformed_copy_is_never_drawn(tmp_path):
    from scoreid.library.store import save_page_files

    src, lib = tmp_path / "sheets", tmp_path / "lib"
    src.mkdir()
    grey = page_png(src / "p1.png")
    entry = {"file": "p1.png", "path": str(src / "p1.png"), "page": 0, "angle_deg": 0.0}
    [stored] = save_page_files(lib, "a", [entry], {"p1.png": src / "p1.png"}, print)
    copy = lib / stored["stored"]["path"]
    data = bytearray(copy.read_bytes())
    data[-20] ^= 0xFF
    copy.write_bytes(bytes(data))  # same size, other contents
    assert np.array_equal(library_page(stored, lib_dir=lib), grey)  # the file where it was, then
    (src / "p1.png").unlink()
    with pytest.raises(PageError, match="damaged.*no such file"):
        library_page(stored, lib_dir=lib)
    copy.write_bytes(bytes(data[:100]))
    with pytest.raises(PageError, match="100 bytes, the library recorded"):
        library_page(stored, lib_dir=lib)
    (lib / "secret.png").write_bytes(b"x")
    for bad in (
        {"path": "pages/a/../../secret.png", "bytes": 1},
        {"path": "/etc/passwd", "bytes": 1},
        {"path": stored["stored"]["path"], "bytes": 2**40},  # larger than any copy a library keeps
        {"path": stored["stored"]["path"], "bytes": True},
        "pages/a/x.png",
    ):
        with pytest.raises(PageError, match="malformed"):
            library_page({**stored, "path": "", "stored": bad}, lib_dir=lib)


def test_an_old_librarys_pages_are_found_where_the_sheets_moved_to(tmp_path):
    """A library built before it kept copies records absolute paths only: moved together with its
    sheets, or with ``source`` pointing at where they are now, it still draws them, pixel for pixel
    — but never a file of that name that is another page."""
    old = tmp_path / "old" / "proj"
    (old / "sheets" / "piece-a").mkdir(parents=True)
    (old / "lib").mkdir()
    grey = page_png(old / "sheets" / "piece-a" / "p1.png")
    entry = {
        "file": "p1.png",
        "path": str(old / "sheets" / "piece-a" / "p1.png"),
        "page": 0,
        "angle_deg": -0.4,
        "size": [300, 200],
    }
    want = library_page(entry, lib_dir=old / "lib")
    new = tmp_path / "new" / "proj"
    shutil.move(old, new)
    assert np.array_equal(library_page(entry, lib_dir=new / "lib"), want)  # sheets/ beside the library
    with pytest.raises(PageError, match="no such file"):
        library_page(entry, lib_dir=tmp_path / "lib-alone")
    assert np.array_equal(library_page(entry, lib_dir=new / "lib", source="../sheets/piece-a"), want)
    elsewhere = tmp_path / "music"
    shutil.move(new / "sheets" / "piece-a", elsewhere)
    assert np.array_equal(library_page(entry, lib_dir=new / "lib", source=str(elsewhere)), want)
    assert np.array_equal(library_page({**entry, "path": "../../../music/p1.png"}, lib_dir=new / "lib"), want)
    page_png(elsewhere / "p1.png", seed=1, size=(280, 200))  # another page of that name
    with pytest.raises(PageError, match="not the size the library recorded"):
        library_page(entry, lib_dir=new / "lib", source=str(elsewhere))
    assert want.shape == grey.shape


def test_only_the_page_asked_for_is_decoded_and_it_is_the_same(tmp_path):
    from scoreid.sheet.pages import load_pages, pages_from_bytes

    two_page_pdf(tmp_path / "s.pdf")
    every = load_pages(tmp_path / "s.pdf")
    [second] = load_pages(tmp_path / "s.pdf", only=1)
    assert second.index == 1 and np.array_equal(second.image, every[1].image)
    assert load_pages(tmp_path / "s.pdf", only=2) == []
    [first] = pages_from_bytes((tmp_path / "s.pdf").read_bytes(), "s.pdf", only=0)
    assert np.array_equal(first.image, every[0].image)
    entry = {"path": str(tmp_path / "s.pdf"), "page": 1, "angle_deg": 0.0}
    assert np.array_equal(library_page(entry), every[1].image)
    with pytest.raises(PageError, match="has no page 3 any more"):
        library_page({**entry, "page": 2})


def test_copies_are_named_by_their_contents_kept_once_and_pruned(tmp_path):
    from scoreid.library.store import prune_page_files, save_page_files

    src, lib = tmp_path / "sheets", tmp_path / "lib"
    src.mkdir()
    page_png(src / "p1.png")
    two_page_pdf(src / "s.pdf")
    (src / "big.png").write_bytes(b"")
    pages = [
        {"file": "p1.png", "page": 0},
        {"file": "s.pdf", "page": 0},
        {"file": "s.pdf", "page": 1},
        {"file": "big.png", "page": 0},
        {"file": "gone.png", "page": 0},
    ]
    files = {f.name: f for f in src.iterdir()}
    files["gone.png"] = src / "gone.png"
    msgs: list[str] = []
    out = save_page_files(lib, "a", pages, files, msgs.append)
    assert [("stored" in pg) for pg in out] == [True, True, True, False, False]
    assert out[1]["stored"] == out[2]["stored"] and out[1]["stored"]["path"].endswith(".pdf")
    assert len(msgs) == 2 and "big.png: no copy kept" in msgs[0] and "gone.png" in msgs[1]
    kept = sorted((lib / "pages" / "a").iterdir())
    assert len(kept) == 2 and [f.read_bytes() for f in kept] == sorted(
        [(src / "p1.png").read_bytes(), (src / "s.pdf").read_bytes()],
        key=lambda b: hashlib.sha256(b).hexdigest(),
    )
    mtimes = [f.stat().st_mtime_ns for f in kept]
    again = save_page_files(
        lib, "a", pages, {k: v.read_bytes() for k, v in files.items() if v.exists()}, print
    )
    assert again == out and [f.stat().st_mtime_ns for f in kept] == mtimes  # the same bytes: kept as they are
    (lib / "pages" / "a" / ".x.png.tmp").write_bytes(b"left by a failed write")
    prune_page_files(lib, "a", {"pages": out[:1]})
    assert [f.name for f in (lib / "pages" / "a").iterdir()] == [Path(out[0]["stored"]["path"]).name]
    prune_page_files(lib, "a", None)
    assert not (lib / "pages" / "a").exists() and (lib / "pages").is_dir()
