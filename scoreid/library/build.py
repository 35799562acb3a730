"""Building a library from a folder of sheet music: one sub-folder per piece (its name is the
piece id) holding page images and/or PDFs, and optionally ``piece.json`` with title/composer.

For each piece: pages -> staff systems (:mod:`scoreid.sheet.systems`) -> system bands at the
contract scale -> one unrolled strip (:func:`scoreid.sheet.strip.unroll`) -> windows every
``stride`` px (:func:`~scoreid.sheet.strip.window_centres`) -> sheet embeddings. Pieces are
stored separately (:mod:`scoreid.library.store`), so ``build`` again on the same folder only
re-embeds pieces whose files changed, ``add`` embeds only the new pieces, and ``remove`` deletes
one without touching the others. Each piece's page files are copied into the library
(``pages/<id>/``, :func:`scoreid.library.store.save_page_files`) so its pages can be drawn wherever
the library goes; ``build`` or ``add`` on a library built before it kept them copies an unchanged
piece's files without embedding it again.

Problems with single pages (blank, not music, unreadable) are reported as warnings naming the
file and page; a piece with no usable page is skipped with a message; only when nothing at all
could be built is it an error.

:func:`piece_from_files` builds one piece the same way from its files' contents in memory (an
upload: nothing is written to a folder first), ready to be stored
(:func:`scoreid.library.store.store_new_piece`) and appended to an open library.

With a model that has a hub bank (:attr:`scoreid.inference.Encoders.hub`) every piece's windows are
also scored for hubness against it (:mod:`scoreid.search.hubness`); a library scored against
another bank (or none) is re-scored when it is opened for building — from the stored vectors, no
page is read again — piece by piece, the index last: a piece's new scores count only once the index
names their bank, so a library without the correction that is interrupted while being re-scored
searches as before.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from scoreid import contract as C
from scoreid.library.store import (
    DEFAULT_STRIDE,
    FORMAT,
    INDEX,
    PIECE_ID_RE,
    LibraryError,
    Piece,
    PieceVectors,
    load_piece,
    pages_stored,
    piece_file,
    prune_page_files,
    read_index,
    save_page_files,
    save_piece,
    write_index,
)
from scoreid.search.hubness import hub_scores
from scoreid.sheet import strip as S
from scoreid.sheet.pages import Page, PageError, load_pages, page_files, pages_from_bytes
from scoreid.sheet.systems import BAND_VERSION, NoSystemsError, detect_systems, extract_systems
from scoreid.tensors import model_fingerprint, sheet_to_network

if TYPE_CHECKING:
    from scoreid.inference import HubBank

EMBED_BATCH = 256
PIECE_ID = PIECE_ID_RE  #: use with .match (``\Z``: no trailing newline)

Log = Callable[[str], None]


class SheetEncoder(Protocol):
    contract: C.Contract
    manifest: dict[str, Any]

    def embed_sheet(self, x: Any) -> np.ndarray: ...


def hub_of(encoder: SheetEncoder) -> HubBank | None:
    """The encoder's hub bank (None for a model without one, or an encoder that has no ``hub``)."""
    return getattr(encoder, "hub", None)


def scored(vectors: np.ndarray, meta: dict[str, np.ndarray], hub: HubBank | None) -> PieceVectors:
    """A piece's rows with their hub scores against ``hub`` (none without a bank)."""
    if hub is None:
        return PieceVectors(vectors, meta)
    return PieceVectors(vectors, meta, hub_scores(vectors, hub.bank, hub.k), hub.sha256)


def folder_fingerprint(files: list[Path], stride: float, model_sha: str) -> str:
    h = hashlib.sha256(f"{stride}|{model_sha}|{C.STAFF_SPACE_PX}|{BAND_VERSION}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def contents_fingerprint(files: Sequence[tuple[str, bytes]], stride: float, model_sha: str) -> str:
    """As :func:`folder_fingerprint`, for files held in memory: their names and contents."""
    h = hashlib.sha256(f"{stride}|{model_sha}|{C.STAFF_SPACE_PX}|{BAND_VERSION}".encode())
    for name, data in files:
        h.update(f"{name}|{len(data)}|{hashlib.sha256(data).hexdigest()}".encode())
    return h.hexdigest()


def piece_id_for(folder: Path) -> str:
    """The piece id of a folder: its name, with runs of other characters than letters, digits,
    ``.``, ``_`` and ``-`` replaced by ``-`` (so "Op. 28 No 4" -> "Op.-28-No-4")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-.")


def piece_metadata(folder: Path) -> tuple[str, str]:
    """(title, composer) from ``piece.json`` when present, else (folder name, "")."""
    path = folder / "piece.json"
    if path.is_file():
        try:
            d = json.loads(path.read_text())
            return str(d.get("title") or folder.name), str(d.get("composer") or "")
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise LibraryError(f"{path}: unreadable piece.json ({e})") from None
    return folder.name, ""


@dataclass
class CutPiece:
    """A piece's systems at the contract scale, before embedding."""

    strip: np.ndarray
    offsets: list[int]
    pages: list[dict[str, Any]]  # per page: file, page, angle, staff space, system boxes
    system_page: list[tuple[int, int, float, tuple[float, float, float, float]]]  # (page, sys, scale, box)
    warnings: list[str]


@dataclass
class PageSource:
    """One file of a piece's pages: ``file`` (its name in ``library.json``), ``path`` (where
    ``library.json`` says it is, to draw the pages later), ``shown`` (how messages name it) and
    ``read`` (its pages, decoded when the piece is cut)."""

    file: str
    path: str
    shown: str
    read: Callable[[], list[Page]]


def cut_piece(folder: Path, files: list[Path], log: Log) -> CutPiece:
    """Detect and cut every system of every page of one piece folder."""
    return cut_pages(
        folder, (PageSource(f.name, str(f.resolve()), str(f), partial(load_pages, f)) for f in files), log
    )


def cut_pages(what: str | Path, sources: Iterable[PageSource], log: Log) -> CutPiece:
    """Detect and cut every system of every page of one piece's files, in order (``what`` names
    the piece when no file has music)."""
    bands: list[np.ndarray] = []
    pages: list[dict[str, Any]] = []
    system_page: list[tuple[int, int, float, tuple[float, float, float, float]]] = []
    warnings: list[str] = []
    page_no = 0
    for src in sources:
        try:
            loaded = src.read()
        except PageError as e:
            warnings.append(str(e))
            log(f"warning: {e}")
            continue
        for pg in loaded:
            try:
                layout = detect_systems(pg.image)
            except NoSystemsError as e:
                msg = f"{src.shown}: page {pg.index + 1}: {e}; skipped"
                warnings.append(msg)
                log(f"warning: {msg}")
                continue
            cuts = extract_systems(layout)
            pages.append(
                {
                    "file": src.file,
                    "path": src.path,
                    "page": pg.index,
                    "angle_deg": layout.angle_deg,
                    "staff_space": layout.staff_space,
                    "size": list(pg.image.shape),
                    "systems": [[round(v, 2) for v in c.box] for c in cuts],
                }
            )
            for c in cuts:
                bands.append(c.band)
                system_page.append((page_no, c.index, c.scale, c.box))
            page_no += 1
    if not bands:
        raise NoSystemsError(f"{what}: no staff systems found on any page")
    strip, offsets = S.unroll(bands)
    return CutPiece(strip, offsets, pages, system_page, warnings)


def windows_of(cut: CutPiece, stride: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Window centres along the strip with their (page, system, x, y0, y1, strip_x) metadata."""
    xs = S.window_centres(cut.strip.shape[1], stride)
    offs = np.asarray(cut.offsets)
    k = np.clip(np.searchsorted(offs, xs, side="right") - 1, 0, len(offs) - 1)
    page = np.zeros(len(xs), np.int16)
    system = np.zeros(len(xs), np.int16)
    px = np.zeros(len(xs), np.float32)
    y0 = np.zeros(len(xs), np.float32)
    y1 = np.zeros(len(xs), np.float32)
    half = C.SHEET_WINDOW_H / 2.0
    for i, (x, kk) in enumerate(zip(xs, k)):
        p, s, f, (top, bottom, left, _right) = cut.system_page[int(kk)]
        page[i], system[i] = p, s
        px[i] = left + (x - offs[kk]) / f
        centre = (top + bottom) / 2.0
        y0[i], y1[i] = centre - half / f, centre + half / f
    return xs, {"page": page, "system": system, "x": px, "y0": y0, "y1": y1, "strip_x": xs.astype(np.float32)}


def embed_strip(
    encoder: SheetEncoder, strip: np.ndarray, xs: np.ndarray, batch: int = EMBED_BATCH
) -> np.ndarray:
    out = []
    for i in range(0, len(xs), batch):
        wins = np.stack([S.window_at(strip, float(x)) for x in xs[i : i + batch]])
        out.append(encoder.embed_sheet(sheet_to_network(wins)))
    return np.concatenate(out).astype(np.float32)


def build_piece(
    pid: str, cut: CutPiece, encoder: SheetEncoder, stride: float, entry: dict[str, Any]
) -> Piece:
    """A cut piece's windows every ``stride`` px, embedded: the piece ready to store, its
    ``library.json`` entry ``entry`` (title, composer, source, fingerprint) completed with its
    pages, windows and systems."""
    xs, meta = windows_of(cut, stride)
    vectors = embed_strip(encoder, cut.strip, xs)
    entry = {
        **entry,
        "pages": cut.pages,
        "n_windows": len(vectors),
        "system_offsets": cut.offsets,
        "strip_width": int(cut.strip.shape[1]),
        "warnings": cut.warnings,
    }
    return Piece(pid, entry, scored(vectors, meta, hub_of(encoder)), cut.strip)


def piece_from_files(
    pid: str,
    files: Sequence[tuple[str, bytes]],
    encoder: SheetEncoder,
    stride: float,
    model_sha: str,
    title: str,
    composer: str,
    log: Log,
) -> Piece:
    """One piece built in memory from its files' (name, contents), in page order: pages decoded
    from the contents, cut, windowed and embedded as a folder's would be; raises
    :class:`~scoreid.sheet.systems.NoSystemsError` when no page has music. The entry's ``source``
    and pages' ``path`` say ``ingest:<pid>`` (there is no file where they came from); the piece holds
    the files' contents (``files``), and storing it keeps a copy of them in the library to draw the
    pages from (:func:`scoreid.library.store.store_new_piece`)."""
    sources = [
        PageSource(name, f"ingest:{pid}/{name}", name, partial(pages_from_bytes, data, name))
        for name, data in files
    ]
    cut = cut_pages(pid, sources, log)
    entry = {
        "title": title or pid,
        "composer": composer,
        "source": f"ingest:{pid}",
        "fingerprint": contents_fingerprint(files, stride, model_sha),
    }
    piece = build_piece(pid, cut, encoder, stride, entry)
    piece.files = dict(files)
    return piece


def piece_folders(sheets_dir: Path) -> list[Path]:
    if not sheets_dir.is_dir():
        raise LibraryError(f"{sheets_dir}: no such folder")
    folders = sorted(p for p in sheets_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise LibraryError(f"{sheets_dir}: no piece folders (expected one sub-folder of pages per piece)")
    return folders


def new_index(encoder: SheetEncoder, model_dir: Path, stride: float) -> dict[str, Any]:
    hub = hub_of(encoder)
    return {
        "format": FORMAT,
        "contract": encoder.contract.to_dict(),
        "model": {
            "dir": str(Path(model_dir).resolve()),
            "sha256": model_fingerprint(model_dir),
            "training": encoder.manifest.get("training", {}),
        },
        "stride": float(stride),
        **({"hub": hub.library_entry()} if hub is not None else {}),
        "pieces": {},
    }


def rescore_hubs(index: dict[str, Any], lib_dir: Path, hub: HubBank | None) -> int:
    """Score every stored piece's rows against ``hub`` (None: drop the correction), then record it in
    the index. Returns the number of pieces re-scored."""
    want = hub.library_entry() if hub is not None else None
    if index.get("hub") == want:
        return 0
    n = 0
    if hub is not None:
        for pid in sorted(index["pieces"]):
            pv = load_piece(lib_dir, pid)
            if pv.hub_bank != hub.sha256 or pv.hub is None:
                save_piece(lib_dir, pid, scored(pv.vectors, pv.meta, hub))  # the strip PNG stays
                n += 1
    if want is None:
        index.pop("hub", None)
    else:
        index["hub"] = want
    write_index(lib_dir, index)
    return n


def open_or_create(
    lib_dir: Path, encoder: SheetEncoder, model_dir: Path, stride: float | None
) -> dict[str, Any]:
    """The existing index (checked against the model and stride), or a new one."""
    if (lib_dir / INDEX).exists():
        index = read_index(lib_dir)
        sha = model_fingerprint(model_dir)
        if index["model"]["sha256"] != sha:
            raise LibraryError(
                f"{lib_dir}: built with another model ({index['model']['dir']}); "
                "use that model or build a new library with --out"
            )
        if stride is not None and float(stride) != float(index["stride"]):
            raise LibraryError(
                f"{lib_dir}: built with stride {index['stride']}, not {stride}; build a new library"
            )
        rescore_hubs(index, lib_dir, hub_of(encoder))
        return index
    return new_index(encoder, model_dir, stride if stride is not None else DEFAULT_STRIDE)


@dataclass
class Prepared:
    """One folder's outcome before the index is touched: the status word, the messages to print, and
    for ``added`` / ``updated`` the piece's index entry (its vectors are already saved)."""

    pid: str
    status: str
    messages: list[str]
    entry: dict[str, Any] | None = None


def prepare_folder(
    index: dict[str, Any],
    lib_dir: Path,
    folder: Path,
    encoder: SheetEncoder,
    force: bool = False,
    replace: bool = True,
    keep_pages: bool = True,
) -> Prepared:
    """The heavy part of :func:`add_folder` — pages, systems, windows, embeddings — saving the
    piece's own files (``pieces/<id>.npz``, ``.png``, the copies of its page files under
    ``pages/<id>/``) but not the index, so folders can be prepared in parallel processes and
    committed by one (:func:`commit_prepared`). An unchanged piece is not embedded again; when its
    entry names no copy of its page files (a library built before it kept them) the copies are made
    and the entry returned with them. ``keep_pages=False``: no copies are made (the pages are drawn
    from the folder; a piece built again drops the copies it had)."""
    msgs: list[str] = []
    pid = piece_id_for(folder)
    if not PIECE_ID.match(pid):
        msgs.append(
            f"warning: {folder}: folder name gives no usable piece id (letters, digits, . _ -); skipped"
        )
        return Prepared(pid, "skipped", msgs)
    if not replace and pid in index["pieces"]:
        return Prepared(pid, "exists", [f"piece {pid} is already in the library; not replaced"])
    files = page_files(folder)
    if not files:
        return Prepared(pid, "skipped", [f"warning: {folder}: no page images or PDFs; skipped"])
    fp = folder_fingerprint(files, index["stride"], index["model"]["sha256"])
    old = index["pieces"].get(pid)
    sources: dict[str, Path] = {f.name: f for f in files}
    if old and old.get("fingerprint") == fp and piece_file(lib_dir, pid).exists() and not force:
        if not keep_pages or pages_stored(lib_dir, old):
            return Prepared(pid, "unchanged", msgs)
        pages = save_page_files(lib_dir, pid, old.get("pages") or [], sources, msgs.append)
        if pages == old.get("pages"):
            return Prepared(pid, "unchanged", msgs)
        msgs.append(f"{pid}: unchanged; its page files are now kept in the library")
        return Prepared(pid, "unchanged", msgs, {**old, "pages": pages})
    title, composer = piece_metadata(folder)
    try:
        cut = cut_piece(folder, files, msgs.append)
    except NoSystemsError as e:
        msgs.append(f"warning: {e}; piece {pid} skipped")
        return Prepared(pid, "skipped", msgs)
    entry = {"title": title, "composer": composer, "source": str(folder.resolve()), "fingerprint": fp}
    piece = build_piece(pid, cut, encoder, index["stride"], entry)
    if keep_pages:
        piece.entry["pages"] = save_page_files(lib_dir, pid, piece.entry["pages"], sources, msgs.append)
    save_piece(lib_dir, pid, piece.rows, piece.strip)
    msgs.append(
        f"{pid}: {len(cut.pages)} pages, {len(cut.offsets)} systems, {piece.entry['n_windows']} windows"
    )
    return Prepared(pid, "updated" if old else "added", msgs, piece.entry)


def commit_prepared(index: dict[str, Any], lib_dir: Path, prep: Prepared, log: Log) -> str:
    """Print a prepared folder's messages and, when it was embedded (or its page files copied),
    enter it in the index (written atomically, so the library on disk is always whole), then drop
    the copies of page files its entry no longer names. Returns the status word."""
    for m in prep.messages:
        log(m)
    if prep.entry is not None:
        index["pieces"][prep.pid] = prep.entry
        write_index(lib_dir, index)
        prune_page_files(lib_dir, prep.pid, prep.entry)
    return prep.status


def add_folder(
    index: dict[str, Any],
    lib_dir: Path,
    folder: Path,
    encoder: SheetEncoder,
    log: Log,
    force: bool = False,
    replace: bool = True,
    keep_pages: bool = True,
) -> str:
    """Embed one piece folder into the library (skipped when unchanged). Returns a status word;
    ``replace=False``: a piece already in the library is never touched (status ``exists``);
    ``keep_pages``: as :func:`prepare_folder`."""
    return commit_prepared(
        index, lib_dir, prepare_folder(index, lib_dir, folder, encoder, force, replace, keep_pages), log
    )


def remove_piece(lib_dir: Path, pid: str) -> None:
    """Remove a piece from the index (written atomically), then its own files and page copies."""
    index = read_index(lib_dir)
    if pid not in index["pieces"]:
        raise LibraryError(
            f"{lib_dir}: no piece {pid!r} (have: {', '.join(sorted(index['pieces'])) or 'none'})"
        )
    del index["pieces"][pid]
    write_index(lib_dir, index)
    for suffix in (".npz", ".png"):
        piece_file(lib_dir, pid, suffix).unlink(missing_ok=True)
    prune_page_files(lib_dir, pid, None)  # the copies of its page files
