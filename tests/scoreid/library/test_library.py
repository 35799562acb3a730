"""Library build/add/remove/show from page folders and PDFs, with a randomly initialised model
exported in the test (plumbing only; quality needs the shipped model, see tests/scoreid/identify)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from scoreid import contract as C
from scoreid.library import Library


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def test_build_open_incremental_add_remove_show(tmp_path, sheets_dir, random_model):
    src = tmp_path / "sheets"
    shutil.copytree(sheets_dir, src)
    lib = tmp_path / "lib"
    res = cli("library", "build", src, "--out", lib, "--model", random_model, "--stride", 40)
    assert res.returncode == 0, res.stderr
    assert "3 pieces" in res.stdout and "Traceback" not in res.stderr
    L = Library.open(lib)
    assert L.piece_ids == ["chopin-mazurka-6-2", "joplin-maple-leaf", "schoenberg-19-2"]
    assert L.vectors.shape == (len(L), C.EMBED_DIM) and L.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(L.vectors, axis=1), 1, atol=1e-4)
    assert L.pieces["joplin-maple-leaf"]["title"] == "Maple Leaf Rag"
    assert L.pieces["schoenberg-19-2"]["title"] == "schoenberg-19-2"
    assert len(L.pieces["chopin-mazurka-6-2"]["pages"]) == 2  # both PDF pages
    # metadata: strip x every 40 px, page x inside the page, windows cover their systems
    s, e = L.rows["joplin-maple-leaf"]
    assert np.allclose(np.diff(L.meta["strip_x"][s:e]), 40)
    assert set(L.meta["piece"][s:e]) == {"joplin-maple-leaf"}
    n_sys = sum(len(p["systems"]) for p in L.pieces["joplin-maple-leaf"]["pages"])
    assert n_sys == 12 and set(L.meta["system"][s:e]) <= set(range(6))
    assert (L.meta["x"][s:e] > 0).all() and (L.meta["x"][s:e] < 1240).all()
    row = L.row(s + 3)
    assert set(row) == {"piece", "page", "system", "x", "y0", "y1", "strip_x"}

    # rebuilding the same folder recomputes nothing; adding a piece leaves the others' files alone
    before = {p: (lib / "pieces" / f"{p}.npz").stat().st_mtime_ns for p in L.piece_ids}
    res = cli("library", "build", src, "--out", lib)
    assert res.returncode == 0 and "3 unchanged" in res.stdout, res.stdout + res.stderr
    new = src / "schoenberg copy (2)"  # a folder name with spaces: id "schoenberg-copy-2"
    shutil.copytree(src / "schoenberg-19-2", new)
    res = cli("library", "add", lib, new)
    assert res.returncode == 0 and "1 added" in res.stdout, res.stderr
    after = {p: (lib / "pieces" / f"{p}.npz").stat().st_mtime_ns for p in L.piece_ids}
    assert after == before
    L2 = Library.open(lib)
    assert L2.pieces["schoenberg-copy-2"]["title"] == "schoenberg copy (2)"
    a, b = L2.rows["schoenberg-19-2"], L2.rows["schoenberg-copy-2"]
    assert np.allclose(L2.vectors[a[0] : a[1]], L2.vectors[b[0] : b[1]])  # deterministic embedding
    res = cli("library", "remove", lib, "schoenberg-copy-2")
    assert res.returncode == 0
    assert (
        Library.open(lib).piece_ids == L.piece_ids and not (lib / "pieces" / "schoenberg-copy-2.npz").exists()
    )
    res = cli("library", "remove", lib, "nope")
    assert res.returncode != 0 and "no piece 'nope'" in res.stderr and "Traceback" not in res.stderr

    png = tmp_path / "show.png"
    res = cli("library", "show", lib, "joplin-maple-leaf", "--out", png)
    assert res.returncode == 0, res.stderr
    assert Image.open(png).size[0] > 500


def test_bad_sheet_inputs_are_named_and_skipped(tmp_path, sheets_dir, random_model):
    src = tmp_path / "sheets"
    src.mkdir()
    shutil.copytree(sheets_dir / "schoenberg-19-2", src / "good")
    (src / "good" / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage that is not a pdf")
    (src / "empty").mkdir()
    blank = src / "blank"
    blank.mkdir()
    Image.fromarray(np.full((1100, 850), 255, np.uint8)).save(blank / "p1.png")
    photo = src / "photo"
    photo.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((600, 800)) * 255).astype(np.uint8)).save(photo / "cat.jpg")
    lib = tmp_path / "lib"
    res = cli("library", "build", src, "--out", lib, "--model", random_model)
    assert res.returncode == 0, res.stderr  # something could be built: exit 0, with warnings
    err = res.stderr
    assert "Traceback" not in err
    assert "broken.pdf: not a readable PDF" in err
    assert "empty: no page images or PDFs" in err
    assert "p1.png: page 1: blank page" in err
    assert "cat.jpg: page 1: no staff lines found" in err
    assert Library.open(lib).piece_ids == ["good"]

    # nothing usable at all -> non-zero, one line, no traceback
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    shutil.copytree(blank, only_bad / "blank")
    res = cli("library", "build", only_bad, "--out", tmp_path / "lib2", "--model", random_model)
    assert res.returncode != 0 and "nothing could be built" in res.stderr and "Traceback" not in res.stderr
    res = cli("library", "build", tmp_path / "nowhere", "--out", tmp_path / "lib3", "--model", random_model)
    assert res.returncode != 0 and "no such folder" in res.stderr
    empty = tmp_path / "emptyroot"
    empty.mkdir()
    res = cli("library", "build", empty, "--out", tmp_path / "lib4", "--model", random_model)
    assert res.returncode != 0 and "no piece folders" in res.stderr
    res = cli("library", "show", tmp_path / "nowhere", "x", "--out", tmp_path / "x.png")
    assert res.returncode != 0 and "not a scoreid library" in res.stderr


def test_library_json_is_documented_format(tmp_path, sheets_dir, random_model):
    lib = tmp_path / "lib"
    src = tmp_path / "s"
    src.mkdir()
    shutil.copytree(sheets_dir / "schoenberg-19-2", src / "a")
    assert cli("library", "build", src, "--out", lib, "--model", random_model).returncode == 0
    index = json.loads((lib / "library.json").read_text())
    assert index["format"] == "scoreid-library/1" and index["stride"] == 50.0
    assert index["contract"]["staff_space_px"] == C.STAFF_SPACE_PX
    assert Path(index["model"]["dir"]) == Path(random_model).resolve()
    assert (lib / "pieces" / "a.png").exists()
    assert not list(Path(lib).glob("**/*.tmp*"))


def test_position_at_any_strip_x_names_the_page_its_file_and_the_page_to_show(
    tmp_path, sheets_dir, random_model
):
    """``Library.at_strip_x``: a page index over the piece's pages in order (two image files are
    pages 0 and 1, each page 0 of its file), the system's band, and ``show_page`` turning to the
    next page only within the page's last system, shortly before it ends."""
    lib = tmp_path / "lib"
    assert cli("library", "build", sheets_dir, "--out", lib, "--model", random_model).returncode == 0
    L = Library.open(lib)
    pid = "joplin-maple-leaf"  # page1.png, page2.png
    info = L.pieces[pid]
    offs = info["system_offsets"]
    first_p2 = len(info["pages"][0]["systems"])  # first system of page 2 (index over all systems)
    end_p1 = offs[first_p2]  # where page 1's last system ends on the strip
    on_p2 = L.at_strip_x(pid, end_p1 + 30.0)
    assert (on_p2["page"], on_p2["file"], on_p2["file_page"], on_p2["system"]) == (1, "page2.png", 0, 0)
    assert on_p2["y0"] < on_p2["y1"]
    early = L.at_strip_x(pid, offs[first_p2 - 1] - 5.0, speed=100.0)  # the system before the last one
    late = L.at_strip_x(pid, end_p1 - 150.0, speed=100.0)  # 1.5 s before the end of the last system
    mid = L.at_strip_x(pid, end_p1 - 450.0, speed=100.0)  # still 4.5 s to go
    assert (early["page"], early["show_page"]) == (0, 0)
    assert (late["page"], late["file"], late["show_page"]) == (0, "page1.png", 1)
    assert mid["show_page"] == 0 and L.at_strip_x(pid, end_p1 - 150.0)["show_page"] == 0  # no speed: no turn


def test_a_build_on_several_cores_is_the_same_library(tmp_path, sheets_dir, random_model):
    """``--workers 2`` prepares pieces in two processes (one encoder each); the main process alone
    writes the index: the library is byte for byte the one ``--workers 1`` builds."""
    libs = {}
    for n in (1, 2):
        libs[n] = tmp_path / f"lib{n}"
        res = cli("library", "build", sheets_dir, "--out", libs[n], "--model", random_model, "--workers", n)
        assert res.returncode == 0, res.stderr
    assert (libs[1] / "library.json").read_text() == (libs[2] / "library.json").read_text()
    copies = sorted(p.relative_to(libs[1]) for p in (libs[1] / "pages").rglob("*") if p.is_file())
    index = json.loads((libs[1] / "library.json").read_text())
    named = {pg["stored"]["path"] for e in index["pieces"].values() for pg in e["pages"]}
    assert [str(c) for c in copies] == sorted(named) and len(named) >= 4  # one copy per page file
    assert copies == sorted(p.relative_to(libs[2]) for p in (libs[2] / "pages").rglob("*") if p.is_file())
    assert all((libs[1] / c).read_bytes() == (libs[2] / c).read_bytes() for c in copies)
    for f in sorted((libs[1] / "pieces").iterdir()):
        if f.suffix == ".npz":
            a, b = np.load(f), np.load(libs[2] / "pieces" / f.name)
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), f.name
        else:
            assert f.read_bytes() == (libs[2] / "pieces" / f.name).read_bytes(), f.name
    res = cli(
        "library", "build", sheets_dir, "--out", tmp_path / "bad", "--model", random_model, "--workers", 0
    )
    assert res.returncode == 2 and "--workers" in res.stderr


def test_a_piece_built_from_files_in_memory_is_the_folder_build(tmp_path, sheets_dir, random_model):
    """``piece_from_files`` (an upload: contents in memory, nothing written) gives the rows and entry
    that building the same files from a folder gives; only where the sources are differs. Stored,
    it keeps the same copies of its page files."""
    from scoreid.inference import load_model
    from scoreid.library.build import DEFAULT_STRIDE, new_index, piece_from_files, prepare_folder
    from scoreid.library.store import load_piece, store_new_piece, write_index
    from scoreid.sheet.pages import page_files

    enc = load_model(random_model, "onnx")
    index = new_index(enc, random_model, DEFAULT_STRIDE)
    uploads = tmp_path / "uploads"
    write_index(uploads, index)
    for pid in ("joplin-maple-leaf", "chopin-mazurka-6-2"):  # page images; a PDF
        folder = sheets_dir / pid
        prep = prepare_folder(index, tmp_path, folder, enc)
        assert prep.status == "added" and prep.entry is not None
        stored = load_piece(tmp_path, pid)
        files = [(f.name, f.read_bytes()) for f in page_files(folder)]
        title, composer = prep.entry["title"], prep.entry["composer"]
        piece = piece_from_files(
            pid, files, enc, DEFAULT_STRIDE, index["model"]["sha256"], title, composer, lambda m: None
        )
        assert np.array_equal(piece.rows.vectors, stored.vectors)
        assert all(np.array_equal(piece.rows.meta[k], stored.meta[k]) for k in stored.meta)
        assert piece.entry["source"] == f"ingest:{pid}"
        assert [pg["path"] for pg in piece.entry["pages"]] == [
            f"ingest:{pid}/{pg['file']}" for pg in prep.entry["pages"]
        ]
        assert "stored" not in piece.entry["pages"][0] and set(piece.files) == {f for f, _ in files}
        store_new_piece(uploads, piece)
        assert without_sources(piece.entry) == without_sources(prep.entry)  # the same copies, too
        for pg in piece.entry["pages"]:
            path = pg["stored"]["path"]
            assert (
                (uploads / path).read_bytes()
                == (tmp_path / path).read_bytes()
                == (folder / pg["file"]).read_bytes()
            )


def without_sources(entry: dict) -> dict:
    """A piece's ``library.json`` entry less where its files are (source, fingerprint, pages' path)."""
    return {**entry, "source": "", "fingerprint": "", "pages": [{**pg, "path": ""} for pg in entry["pages"]]}
