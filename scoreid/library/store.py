"""The library on disk and its reader, ``Library.open(LIB_DIR)``.

Layout (format ``scoreid-library/1``)::

    LIB_DIR/library.json          {"format", "contract" (the model's), "model" {dir, sha256,
                                   training}, "stride", "pieces": {pid: {title, composer, source,
                                   fingerprint, pages: [{file, path, page, angle_deg, staff_space,
                                   size, stored, systems: [[top, bottom, left, right], ...]}],
                                   n_windows, system_offsets, warnings}}}
    LIB_DIR/pieces/<pid>.npz      vectors float32 [n, 32] (L2-normalised sheet embeddings) and,
                                   per row, page int16, system int16, x float32 (window centre on
                                   the deskewed page, page px), y0 / y1 float32 (the window's rows
                                   on the page), strip_x float32 (window centre on the strip at
                                   the contract scale); with a model that has a hub bank also
                                   hub float32 [n] (each row's hubness, :mod:`scoreid.search.
                                   hubness`) and hub_bank (the bank's sha256 it was scored against)
    LIB_DIR/pieces/<pid>.png      the piece's unrolled strip (contract scale), for plots
    LIB_DIR/pages/<pid>/<sha256><suffix>
                                  a copy of each file the piece's pages come from (its PDFs or page
                                  images, byte for byte; named by the sha256 of the contents), which
                                  ``pages[k].stored`` {path, bytes} names: the page images are drawn
                                  from these (:func:`scoreid.sheet.pages.library_page`), so the
                                  folder is whole wherever it is copied; a library built before it
                                  kept them draws them from ``pages[k].path`` (the file where it was)

Each piece is stored on its own, so adding or removing one rewrites only ``library.json``;
:func:`store_new_piece` writes a built :class:`Piece` (its files, then the index, so a failed write
never leaves a half-changed library). The copies of the page files are named by their contents, so
a piece built again writes its new copies beside the ones the index names, and the ones no entry
names any more go once the index is written (:func:`prune_page_files`).

:class:`Library` is the library in memory, the one model the offline identifier and the services
share: ``vectors`` (the pieces' rows, in sorted id order when opened, pieces appended later after
them), ``meta`` (per-row positions as arrays, ``piece`` as the piece id), ``piece_index`` (per row,
the piece's index in ``piece_ids``), ``rows`` (each piece's row range), ``pieces`` (the
``library.json`` entries: titles, pages, systems) and the pieces' chance weights. ``append`` adds
a built piece in memory.

Hub correction: ``library.json``'s ``hub`` ({bank, k, weight}) names the bank the rows' hubness was
scored against; ``Library.hub`` holds each row's score (0 for a piece scored against another bank,
which ``scoreid library build`` re-scores), and a search index is built on ``search_vectors`` and
asked with ``search_queries`` (:mod:`scoreid.search.hubness`).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scoreid.contract import Contract, ContractError
from scoreid.errors import UserError
from scoreid.identify.tally import CHANCE_EXPONENT, chance_weights
from scoreid.search.hubness import search_queries, search_rows
from scoreid.sheet.pages import (
    MAX_STORED_BYTES,
    PAGE_SUFFIXES,
    STORED_DIR,
    STORED_RE,
    PageError,
    stored_bytes,
)

FORMAT = "scoreid-library/1"
INDEX = "library.json"
META_FIELDS = ("page", "system", "x", "y0", "y1", "strip_x")
PIECE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  #: what a piece id may be
DEFAULT_STRIDE = 50.0  #: px on the strip between database windows (REFERENCE: every 50 px)

Log = Callable[[str], None]
#: A page file given to :func:`save_page_files`: its path, or its contents.
PageFile = Path | bytes


def _quiet(msg: str) -> None:
    pass


class LibraryError(UserError):
    """A library directory that cannot be used (missing, corrupt, or for another model)."""


@dataclass
class PieceVectors:
    """A piece's rows: its windows' vectors and per-row positions."""

    vectors: np.ndarray  # float32 [n, 32]
    meta: dict[str, np.ndarray]  # META_FIELDS -> [n]
    hub: np.ndarray | None = None  # float32 [n]: hubness against the bank ``hub_bank`` (None: not scored)
    hub_bank: str = ""


@dataclass
class Piece:
    """One built piece, ready to join a library: its id, its ``library.json`` entry (title,
    composer, pages, ``n_windows``, systems...), its rows, its unrolled strip (stored beside the
    rows for plots; None: not stored) and the files its pages come from (each page ``file``'s path
    or contents: the library keeps a copy of each, :func:`save_page_files`)."""

    pid: str
    entry: dict[str, Any]
    rows: PieceVectors
    strip: np.ndarray | None = None
    files: Mapping[str, PageFile] = field(default_factory=dict)


def piece_file(lib_dir: Path, pid: str, suffix: str = ".npz") -> Path:
    return lib_dir / "pieces" / f"{pid}{suffix}"


def read_index(lib_dir: Path) -> dict[str, Any]:
    path = lib_dir / INDEX
    if not path.is_file():
        raise LibraryError(
            f"{lib_dir}: not a scoreid library (no {INDEX}); build one with `scoreid library build`"
        )
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LibraryError(f"{path}: unreadable library index ({e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise LibraryError(f"{path}: unknown library format, expected {FORMAT!r}")
    return index


def write_index(lib_dir: Path, index: dict[str, Any]) -> None:
    """Atomic write (temp file + rename), so a crash never leaves a half-written index."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    tmp = lib_dir / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, lib_dir / INDEX)


def save_piece(lib_dir: Path, pid: str, pv: PieceVectors, strip: np.ndarray | None = None) -> None:
    """A piece's own files (``pieces/<pid>.npz`` and, with ``strip``, ``.png``), each written to a
    temp file and renamed, so neither is ever half-written; the index is not touched."""
    path = piece_file(lib_dir, pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {"vectors": pv.vectors.astype(np.float32), **pv.meta}
    if pv.hub is not None:
        arrays.update(hub=np.asarray(pv.hub, np.float32), hub_bank=np.array(pv.hub_bank))
    try:
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
        if strip is not None:
            from PIL import Image

            png = piece_file(lib_dir, pid, ".png")
            tmp = png.with_name(png.name + ".tmp.png")
            Image.fromarray(strip).save(tmp)
            os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)


def store_new_piece(lib_dir: Path, piece: Piece, log: Log = _quiet) -> None:
    """Add a built piece that is not in the library at ``lib_dir`` yet: its own files and the copies
    of its page files (``piece.files``; its ``entry`` then names them), then the index (read afresh,
    so pieces another process added meanwhile are kept) with its entry, written atomically. Either
    the whole piece is in the library afterwards or nothing changed: when a write fails, the piece's
    files written so far are removed again."""
    index = read_index(lib_dir)
    if piece.pid in index["pieces"]:
        raise LibraryError(f"piece {piece.pid} is already in the library; not replaced")
    entry = piece.entry
    try:
        if piece.files:
            pages = save_page_files(lib_dir, piece.pid, entry.get("pages") or [], piece.files, log)
            entry = {**entry, "pages": pages}
        save_piece(lib_dir, piece.pid, piece.rows, piece.strip)
        index["pieces"][piece.pid] = entry
        write_index(lib_dir, index)
    except BaseException:
        for suffix in (".npz", ".png"):
            piece_file(lib_dir, piece.pid, suffix).unlink(missing_ok=True)
        prune_page_files(lib_dir, piece.pid, None)
        raise
    piece.entry = entry


# ------------------------------------------------------------------ the pages' files
def pages_dir(lib_dir: Path, pid: str) -> Path:
    """Where a library keeps its copies of a piece's page files (:data:`scoreid.sheet.pages.STORED_RE`)."""
    return lib_dir / STORED_DIR / pid


def save_page_files(
    lib_dir: Path, pid: str, pages: Sequence[Mapping[str, Any]], files: Mapping[str, PageFile], log: Log
) -> list[dict[str, Any]]:
    """Keep a copy of each file a piece's pages come from in the library (``pages/<pid>/<sha256 of
    the contents><suffix>``, written to a temp file and renamed; a copy already there is kept), and
    return the pages (``library.json``'s ``pages``) with each one's ``stored`` {path, bytes}.
    ``files``: each page ``file``'s path or contents. A page whose file is not given, cannot be read
    (any more) or is larger than :data:`~scoreid.sheet.pages.MAX_STORED_BYTES` keeps no copy (``log``
    says so); a copy that cannot be written raises. The index is not touched. The names only depend
    on the contents, so the copies a library holds are the same bytes whoever builds it, and a
    piece's new copies never replace the ones its entry in the index names until that entry is
    replaced (:func:`prune_page_files` then drops the old ones)."""
    out: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any] | None] = {}
    for pg in pages:
        name = str(pg.get("file") or "")
        if name not in done:
            src = files.get(name)
            done[name] = None
            if src is not None:
                try:
                    data = _page_file_contents(name, src)
                except (OSError, ValueError) as e:
                    where = f"drawn from {src}" if isinstance(src, Path) else "not drawn"
                    log(f"warning: {pid}: {name}: no copy kept in the library ({e}); its pages are {where}")
                else:
                    done[name] = _keep_copy(lib_dir, pid, Path(name).suffix.lower(), data)
        stored = done[name]
        out.append({**pg, "stored": stored} if stored is not None else dict(pg))
    return out


def _page_file_contents(name: str, src: PageFile) -> bytes:
    """A page file's contents to keep a copy of (ValueError: not a page file, empty or too large)."""
    if Path(name).suffix.lower() not in PAGE_SUFFIXES:
        raise ValueError(f"not a page file type ({Path(name).suffix or 'no suffix'})")
    if isinstance(src, Path):
        size = src.stat().st_size
        if size > MAX_STORED_BYTES:
            raise ValueError(f"{size} bytes; a library keeps copies of at most {MAX_STORED_BYTES}")
        src = src.read_bytes()
    if len(src) > MAX_STORED_BYTES:
        raise ValueError(f"{len(src)} bytes; a library keeps copies of at most {MAX_STORED_BYTES}")
    if not src:
        raise ValueError("an empty file")
    return src


def _keep_copy(lib_dir: Path, pid: str, suffix: str, data: bytes) -> dict[str, Any]:
    """Write one copy (unless that very file is there) and return its ``stored`` record."""
    rel = f"{STORED_DIR}/{pid}/{hashlib.sha256(data).hexdigest()}{suffix}"
    stored: dict[str, Any] = {"path": rel, "bytes": len(data)}
    try:
        stored_bytes(lib_dir, stored)
        return stored  # kept already
    except PageError:
        pass
    path = lib_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return stored


def stored_paths(entry: Mapping[str, Any]) -> set[str]:
    """The library's copies of page files a piece's entry names (paths relative to the library)."""
    out = set()
    for pg in entry.get("pages") or []:
        stored = pg.get("stored")
        if isinstance(stored, Mapping) and isinstance(stored.get("path"), str):
            out.add(stored["path"])
    return out


def pages_stored(lib_dir: Path, entry: Mapping[str, Any]) -> bool:
    """Whether every page of a piece's entry has its copy in the library (at the recorded size)."""
    for pg in entry.get("pages") or []:
        stored = pg.get("stored")
        if not isinstance(stored, Mapping) or not STORED_RE.match(str(stored.get("path"))):
            return False
        try:
            if (lib_dir / stored["path"]).stat().st_size != stored.get("bytes"):
                return False
        except OSError:
            return False
    return True


def prune_page_files(lib_dir: Path, pid: str, entry: Mapping[str, Any] | None) -> None:
    """Remove the files in ``pages/<pid>/`` that the piece's ``entry`` (None: the piece is gone)
    does not name — copies a replaced build kept, or a failed write left — and the folder once empty."""
    folder = pages_dir(lib_dir, pid)
    if not folder.is_dir():
        return
    keep = {Path(p).name for p in stored_paths(entry)} if entry is not None else set()
    for f in folder.iterdir():
        if f.name not in keep:
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
    if not keep:
        try:
            folder.rmdir()
        except OSError:
            pass


def load_piece(lib_dir: Path, pid: str) -> PieceVectors:
    path = piece_file(lib_dir, pid)
    try:
        with np.load(path) as z:
            hub = z["hub"].astype(np.float32) if "hub" in z.files else None
            bank = str(z["hub_bank"]) if "hub_bank" in z.files else ""
            pv = PieceVectors(z["vectors"].astype(np.float32), {k: z[k] for k in META_FIELDS}, hub, bank)
        if pv.hub is not None and pv.hub.shape != (len(pv.vectors),):
            raise ValueError(f"{pv.hub.shape} hub scores for {len(pv.vectors)} rows")
        return pv
    except (OSError, KeyError, ValueError) as e:
        raise LibraryError(
            f"{path}: unreadable piece data ({e}); rebuild it with `scoreid library add`"
        ) from None


def system_layout(piece: dict[str, Any]) -> list[tuple[int, int]]:
    """(page index, system index on that page) of each of a piece's systems, in strip order (the
    systems are unrolled page by page, in reading order); ``piece`` is its ``library.json`` entry."""
    return [
        (k, s) for k, pg in enumerate(piece.get("pages") or []) for s in range(len(pg.get("systems", [])))
    ]


@dataclass(frozen=True)
class _Geometry:
    """One piece's geometry for :meth:`Library.at_strip_x`: its windows' strip x, the systems'
    strip offsets (a list, for ``bisect``) and ends, each system's rows (offsets in the piece; all
    of them for a system without windows) and page-x per strip-x scale, and the system layout."""

    strip_x: np.ndarray
    offsets: list[float]
    ends: list[float]
    system_rows: list[np.ndarray]
    scale: list[float]
    layout: list[tuple[int, int]]

    @classmethod
    def of(cls, lib: Library, pid: str) -> _Geometry:
        s, e = lib.rows[pid]
        entry = lib.pieces[pid]
        sx = lib.meta["strip_x"][s:e]
        offs = np.asarray(entry.get("system_offsets") or [0], np.float64)
        width = float(entry.get("strip_width") or (float(sx[-1]) + 1.0))
        ends = [float(offs[k + 1]) if k + 1 < len(offs) else width for k in range(len(offs))]
        rows, scale = [], []
        for k, end in enumerate(ends):
            in_sys = np.flatnonzero((sx >= offs[k]) & (sx < end))
            rows.append(in_sys if len(in_sys) else np.arange(e - s))
            sc = 1.0
            if len(in_sys) > 1:
                a, b = s + in_sys[0], s + in_sys[-1]
                sc = float(
                    (lib.meta["x"][b] - lib.meta["x"][a]) / (lib.meta["strip_x"][b] - lib.meta["strip_x"][a])
                )
            scale.append(sc)
        return cls(sx, [float(o) for o in offs], ends, rows, scale, system_layout(entry))


class Library:
    """A library in memory (see the module docstring): ``vectors`` (N, D), ``meta`` and
    ``piece_index`` (per row), ``piece_ids`` (in row order), ``rows``, ``pieces``; ``open(dir)``
    reads a built one, ``from_arrays`` makes one without a directory, ``append`` adds a piece."""

    def __init__(
        self,
        lib_dir: Path | None,
        index: dict[str, Any],
        vectors: np.ndarray,
        meta: dict[str, np.ndarray],
        piece_ids: Sequence[str] | None = None,
        hub: np.ndarray | None = None,
    ):
        """``piece_ids``: the order of the pieces' rows in ``vectors`` (default: sorted ids);
        ``hub``: each row's hubness against the bank ``index["hub"]`` names (None: zeros)."""
        self.dir = lib_dir
        self.index = index
        self.vectors = vectors
        self.meta = meta
        self.hub = np.zeros(len(vectors), np.float32) if hub is None else np.asarray(hub, np.float32)
        if self.hub.shape != (len(vectors),):
            raise ValueError(f"{self.hub.shape} hub scores for {len(vectors)} rows")
        self._search_vectors: np.ndarray | None = None
        self.pieces: dict[str, dict[str, Any]] = index["pieces"]
        self._geometries: dict[str, _Geometry] = {}
        self._chance: dict[tuple[float, int], dict[str, float]] = {}
        self.contract = Contract.from_dict(index["contract"])
        self.stride = float(index["stride"])
        ids = list(piece_ids) if piece_ids is not None else sorted(self.pieces)
        self.piece_ids = ids
        #: row range [start, end) of each piece in ``vectors``
        self.rows: dict[str, tuple[int, int]] = {}
        start = 0
        for pid in ids:
            n = int(self.pieces[pid]["n_windows"])
            self.rows[pid] = (start, start + n)
            start += n
        if start != len(vectors) or any(len(a) != start for a in meta.values()):
            raise ValueError(
                f"{start} windows in the pieces, {len(vectors)} vectors, "
                f"{sorted({len(a) for a in meta.values()})} metadata rows"
            )
        #: per row: the piece's index in ``piece_ids``
        self.piece_index = np.repeat(
            np.arange(len(ids), dtype=np.int32), [self.rows[p][1] - self.rows[p][0] for p in ids]
        )

    @classmethod
    def open(cls, lib_dir: str | Path) -> Library:
        lib_dir = Path(lib_dir)
        index = read_index(lib_dir)
        try:
            Contract.from_dict(index["contract"])
        except (KeyError, TypeError, ContractError) as e:
            raise LibraryError(f"{lib_dir / INDEX}: malformed contract ({e})") from None
        bad = [pid for pid in index["pieces"] if not isinstance(pid, str) or not PIECE_ID_RE.match(pid)]
        if bad:  # a piece id names a file under pieces/: never a path, never control characters
            raise LibraryError(f"{lib_dir / INDEX}: invalid piece ids {bad[:3]!r}; rebuild the library")
        vecs, metas, hubs = [], [], []
        bank = hub_bank_of(index)
        for pid in sorted(index["pieces"]):
            pv = load_piece(lib_dir, pid)
            if len(pv.vectors) != int(index["pieces"][pid]["n_windows"]):
                raise LibraryError(
                    f"{piece_file(lib_dir, pid)}: {len(pv.vectors)} rows, index says "
                    f"{index['pieces'][pid]['n_windows']}; rebuild the piece"
                )
            vecs.append(pv.vectors)
            metas.append(_with_piece(pv.meta, pid))
            hubs.append(piece_hub(pv, bank))
        dim = int(index["contract"].get("embed_dim", 32))
        vectors = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
        keys = (*META_FIELDS, "piece")
        meta = {k: (np.concatenate([m[k] for m in metas]) if metas else np.zeros(0)) for k in keys}
        hub = np.concatenate(hubs) if hubs else np.zeros(0, np.float32)
        return cls(lib_dir, index, np.ascontiguousarray(vectors, np.float32), meta, hub=hub)

    @classmethod
    def from_arrays(
        cls,
        vectors: np.ndarray,
        piece_index: np.ndarray,
        positions: Mapping[str, np.ndarray],
        piece_ids: Sequence[str],
        titles: Mapping[str, str] | None = None,
        contract: Contract | None = None,
        stride: float = DEFAULT_STRIDE,
    ) -> Library:
        """A library in memory only (no directory, no model): rows ``vectors`` of the pieces
        ``piece_index`` (index into ``piece_ids``; each piece's rows together, in ``piece_ids``
        order) at ``positions`` (``META_FIELDS``)."""
        piece_index = np.asarray(piece_index, np.int64)
        counts = np.bincount(piece_index, minlength=len(piece_ids)) if len(piece_index) else np.zeros(0, int)
        if len(counts) != len(piece_ids) or np.any(np.diff(piece_index) < 0):
            raise ValueError("rows must be grouped by piece, in piece_ids order")
        titles = titles or {}
        pieces = {
            pid: {"title": titles.get(pid, pid), "n_windows": int(n)} for pid, n in zip(piece_ids, counts)
        }
        index = {
            "format": FORMAT,
            "contract": (contract or Contract()).to_dict(),
            "model": {"dir": "", "sha256": ""},
            "stride": float(stride),
            "pieces": pieces,
        }
        meta = {k: np.asarray(positions[k]) for k in META_FIELDS}
        meta["piece"] = np.array([piece_ids[i] for i in piece_index], dtype=object)
        return cls(None, index, np.ascontiguousarray(vectors, np.float32), meta, piece_ids)

    def append(self, piece: Piece) -> None:
        """Add a built piece in memory, its rows after the others' (the directory is not written:
        :func:`store_new_piece` does that). The rows of the pieces already here do not change, and
        the per-row arrays, ``piece_ids`` and ``rows`` are replaced, not changed, so a reader that
        took them before sees them whole."""
        if piece.pid in self.rows:
            raise ValueError(f"piece {piece.pid!r} is already in the library")
        vectors = np.asarray(piece.rows.vectors, np.float32)
        n, start = len(vectors), len(self.vectors)
        if (
            vectors.ndim != 2
            or vectors.shape[1] != self.vectors.shape[1]
            or int(piece.entry["n_windows"]) != n
        ):
            raise ValueError(
                f"piece {piece.pid!r}: {vectors.shape} vectors, {piece.entry['n_windows']} "
                f"windows; the library's rows have {self.vectors.shape[1]} dimensions"
            )
        meta = _with_piece(piece.rows.meta, piece.pid)
        self.meta = {k: np.concatenate([self.meta[k], np.asarray(meta[k])]) for k in self.meta}
        self.vectors = np.concatenate([self.vectors, vectors])
        self.hub = np.concatenate([self.hub, piece_hub(piece.rows, hub_bank_of(self.index))])
        self._search_vectors = None
        self.piece_index = np.concatenate([self.piece_index, np.full(n, len(self.piece_ids), np.int32)])
        self.pieces[piece.pid] = piece.entry
        self.piece_ids = [*self.piece_ids, piece.pid]
        self.rows = {**self.rows, piece.pid: (start, start + n)}
        self._chance.clear()

    def subset(self, piece_ids: Iterable[str]) -> Library:
        """A library in memory of some of these pieces only (rows in this library's order; same
        contract, stride and geometry): a smaller library without embedding anything again."""
        want = set(piece_ids)
        unknown = want - set(self.rows)
        if unknown:
            raise KeyError(f"not in the library: {sorted(unknown)[:3]}")
        ids = [p for p in self.piece_ids if p in want]
        take = np.concatenate([np.arange(*self.rows[p]) for p in ids]) if ids else np.zeros(0, np.int64)
        index = {**self.index, "pieces": {p: self.pieces[p] for p in ids}}
        meta = {k: v[take] for k, v in self.meta.items()}
        return Library(self.dir, index, np.ascontiguousarray(self.vectors[take]), meta, ids, self.hub[take])

    # ------------------------------------------------------------------ search (hub correction)
    @property
    def hub_weight(self) -> float:
        """The weight of the rows' hubness in a search's score (0: no correction)."""
        entry = self.index.get("hub") or {}
        return float(entry.get("weight", 0.0)) if entry.get("bank") else 0.0

    @property
    def search_vectors(self) -> np.ndarray:
        """The rows a search index of this library holds (:func:`scoreid.search.hubness.search_rows`)."""
        if self._search_vectors is None:
            self._search_vectors = search_rows(self.vectors, self.hub, self.hub_weight)
        return self._search_vectors

    def search_queries(self, queries: np.ndarray) -> np.ndarray:
        """Audio embeddings as queries of an index on :attr:`search_vectors`."""
        return search_queries(queries, self.search_vectors.shape[1] != self.vectors.shape[1])

    def nearest(self, index: Any, embeddings: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each audio embedding's ``k`` nearest sheet windows in ``index`` (a search index on
        :attr:`search_vectors`) as (piece id, similarity), best first: the hits a window votes with."""
        sims, rows = index.search(self.search_queries(embeddings), k)
        pieces = self.meta["piece"]
        return [[(str(pieces[r]), float(x)) for r, x in zip(rr, ss)] for rr, ss in zip(rows, sims)]

    def search_rows_of(self, piece: Piece) -> np.ndarray:
        """A built piece's rows as :attr:`search_vectors` holds them (for an index extended in place)."""
        return search_rows(
            piece.rows.vectors, piece_hub(piece.rows, hub_bank_of(self.index)), self.hub_weight
        )

    def __len__(self) -> int:
        return len(self.vectors)

    def row(self, i: int) -> dict[str, Any]:
        """Metadata of one row as plain Python values."""
        out: dict[str, Any] = {"piece": str(self.meta["piece"][i])}
        for k in META_FIELDS:
            v = self.meta[k][i]
            out[k] = int(v) if k in ("page", "system") else round(float(v), 1)
        return out

    def at_strip_x(
        self, pid: str, strip_x: float, speed: float | None = None, turn_lead_s: float = 2.0
    ) -> dict[str, Any]:
        """The position ``strip_x`` (px on the piece's unrolled strip, any value, not only a window
        centre) as page (over the piece's pages in order), the file and page within it, system, page
        x and band, and ``show_page``: the page to show — the next one once the music, moving on at
        ``speed`` strip px/s, is within ``turn_lead_s`` of the end of a page's last system (so a
        page turns before the music leaves it and never before its last system)."""
        s, _e = self.rows[pid]
        g = self._geometry(pid)
        strip_x = float(strip_x)
        k = min(max(bisect.bisect_right(g.offsets, strip_x) - 1, 0), len(g.offsets) - 1)
        cand = g.system_rows[k]  # the rows of system k (all of the piece's when the system has none)
        i = s + int(cand[np.argmin(np.abs(g.strip_x[cand] - strip_x))])
        out = self.row(i)
        out["x"] = round(
            float(self.meta["x"][i] + (strip_x - float(self.meta["strip_x"][i])) * g.scale[k]), 1
        )
        out["strip_x"] = round(strip_x, 1)
        pages = self.pieces[pid].get("pages") or []
        page = int(out["page"])
        if 0 <= page < len(pages):
            out["file"], out["file_page"] = pages[page].get("file", ""), int(pages[page].get("page", 0))
        out["show_page"] = page
        end = g.ends[k]
        last_on_page = k + 1 < len(g.layout) and g.layout[k + 1] == (page + 1, 0)  # the next starts a page
        if speed and speed > 0 and last_on_page and (end - strip_x) / speed <= turn_lead_s:
            out["show_page"] = page + 1
        return out

    def _geometry(self, pid: str) -> _Geometry:
        """A piece's geometry for :meth:`at_strip_x` (computed once: a piece's rows never change;
        pieces are only appended)."""
        g = self._geometries.get(pid)
        if g is None:
            g = self._geometries[pid] = _Geometry.of(self, pid)
        return g

    def title(self, pid: str) -> str:
        return str(self.pieces[pid].get("title") or pid)

    @property
    def titles(self) -> dict[str, str]:
        """Title of every piece, by id."""
        return {pid: self.title(pid) for pid in self.piece_ids}

    def chance_weights(self, exponent: float = CHANCE_EXPONENT) -> Mapping[str, float]:
        """Each piece's vote weight for its length (:func:`scoreid.identify.tally.chance_weights` of
        its windows); computed once per exponent and number of pieces. Read only."""
        rows = self.rows  # pieces are only appended, and ``append`` replaces ``rows``
        key = (exponent, len(rows))
        w = self._chance.get(key)
        if w is None:
            w = self._chance[key] = chance_weights({pid: e - s for pid, (s, e) in rows.items()}, exponent)
        return w


def hub_bank_of(index: Mapping[str, Any]) -> str:
    """The sha256 of the hub bank a library's rows are scored against ("" for none)."""
    return str((index.get("hub") or {}).get("bank") or "")


def piece_hub(pv: PieceVectors, bank: str) -> np.ndarray:
    """A piece's hub scores if they were scored against ``bank``, else zeros (no correction)."""
    if pv.hub is not None and bank and pv.hub_bank == bank:
        return np.asarray(pv.hub, np.float32)
    return np.zeros(len(pv.vectors), np.float32)


def _with_piece(meta: Mapping[str, np.ndarray], pid: str) -> dict[str, np.ndarray]:
    """A piece's per-row positions with its id as the ``piece`` of every row."""
    n = len(meta[META_FIELDS[0]])
    return {**{k: meta[k] for k in META_FIELDS}, "piece": np.full(n, pid, dtype=object)}
