"""Reading sheet-music pages into grey uint8 arrays (white paper = 255, ink = 0).

``load_pages(path)`` reads one file: PNG, JPEG, TIFF (every frame of a multi-page TIFF), BMP,
or a PDF, whose pages are rasterised with pypdfium2 at ``PDF_DPI``; ``pages_from_bytes(data,
name)`` reads the same from a file's contents in memory (the type from ``name``'s suffix).
Transparent images are composited onto white. Errors a user can cause (missing, unreadable or
corrupt files, a PDF with no pages) raise :class:`PageError` with a one-line message naming the file.
``library_page(entry, lib_dir=...)`` reads a page a library records again, deskewed as the build did
(the page images of ``library show``, ``identify --plot`` and the web page): from the library's own
copy of the page's file (``LIB_DIR/pages/<piece>/<sha256><suffix>``, :data:`STORED_RE`, written by
:func:`scoreid.library.store.save_page_files`) when it has one, else from where the file was.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence

from scoreid.sheet.deskew import rotate_page

#: Resolution at which PDF pages are rasterised. Typical engraved staff spacing (1.6-1.9 mm) is
#: then 12-15 px, comfortably above the contract's 8 px, so the page is only ever shrunk.
PDF_DPI = 200

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
PDF_SUFFIXES = (".pdf",)
PAGE_SUFFIXES = IMAGE_SUFFIXES + PDF_SUFFIXES

#: A library's copy of a page file, relative to the library folder: ``pages/<piece id>/`` and the
#: sha256 of its contents with the file's suffix (lower case).
STORED_DIR = "pages"
STORED_RE = re.compile(
    r"pages/[A-Za-z0-9][A-Za-z0-9._-]{0,127}/(?P<sha>[0-9a-f]{64})\.(?:pdf|png|jpg|jpeg|tif|tiff|bmp)\Z"
)
#: The largest page file a library keeps a copy of (and reads back): a scanned 200-page PDF is
#: 50-200 MB; a larger file stays where it is and its pages are drawn from there.
MAX_STORED_BYTES = 256 * 2**20

# decompression-bomb guard: A0 at 600 dpi is ~ 20000 x 28000 px
Image.MAX_IMAGE_PIXELS = 600_000_000


class PageError(ValueError):
    """A page file that cannot be used; the message names the file and the reason."""


@dataclass
class Page:
    """One grey page: ``image`` uint8 (H, W); ``source`` the file; ``index`` the page in it (0-based)."""

    image: np.ndarray
    source: Path
    index: int

    @property
    def label(self) -> str:
        return f"{self.source.name} page {self.index + 1}"


def to_grey(img: Image.Image) -> np.ndarray:
    """Any PIL image -> grey uint8, transparency composited onto white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, np.float64)
        hi = a.max() if a.size and a.max() > 0 else 1.0
        return np.clip(a * 255.0 / (65535.0 if hi > 255 else 255.0), 0, 255).astype(np.uint8)
    if img.mode == "1":
        return np.asarray(img.convert("L"), np.uint8)
    return np.asarray(img.convert("L"), np.uint8)


def _load_image(path: Path, data: bytes | None = None, only: int | None = None) -> list[Page]:
    buf = None if data is None else io.BytesIO(data)
    try:
        with Image.open(path if buf is None else buf) as im:
            pages = [
                Page(to_grey(frame.copy()), path, i)
                for i, frame in enumerate(ImageSequence.Iterator(im))
                if only is None or i == only
            ]
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError... on bad files
        why = _first_line(e).replace(repr(buf), repr(str(path)))  # the file's name, not the buffer's
        raise PageError(f"{path}: not a readable image ({why})") from None
    if not pages and only is None:
        raise PageError(f"{path}: contains no image")
    return pages


def _load_pdf(path: Path, dpi: float, data: bytes | None = None, only: int | None = None) -> list[Page]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path) if data is None else data)
    except Exception as e:
        raise PageError(f"{path}: not a readable PDF ({_first_line(e)})") from None
    try:
        n = len(pdf)
        if n == 0:
            raise PageError(f"{path}: the PDF has no pages")
        pages = []
        for i in range(n) if only is None else [only] if 0 <= only < n else []:
            try:
                bitmap = pdf[i].render(scale=dpi / 72.0, grayscale=True)
                pil = bitmap.to_pil()
            except Exception as e:
                raise PageError(f"{path}: page {i + 1} could not be rasterised ({_first_line(e)})") from None
            pages.append(Page(to_grey(pil), path, i))
        return pages
    finally:
        pdf.close()


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def load_pages(path: str | Path, pdf_dpi: float = PDF_DPI, only: int | None = None) -> list[Page]:
    """All pages of one image or PDF file as grey uint8 arrays (``only``: that page alone, none
    when the file has no such page)."""
    path = Path(path)
    if not path.exists():
        raise PageError(f"{path}: no such file")
    if not path.is_file():
        raise PageError(f"{path}: not a file")
    return _read(path, pdf_dpi, only=only)


def library_page(
    entry: Mapping[str, Any],
    files: dict[str, list[Page]] | None = None,
    *,
    lib_dir: str | Path | None = None,
    source: str | None = None,
) -> np.ndarray:
    """The grey image of a page as a library records it (``library.json``'s ``pages[k]``: the
    ``page`` within its file and the ``angle_deg`` the build deskewed it by), read again and deskewed
    again (same size): the coordinates of its systems and of followed positions. The file is, in
    turn: the library's own copy (``stored``, in ``lib_dir``: the library folder), the file at the
    recorded ``path``, and — for a library built before it kept copies, moved since — the piece's
    ``source`` folder (absolute, or relative to ``lib_dir``) and the recorded path's last two or three
    parts inside ``lib_dir`` or beside it (taken only when the page has the recorded ``size``).
    ``files``: each file's pages, read once across calls (without it only the one page is decoded).
    PageError when no file can be read (any more) or has the page; the message says what was tried."""
    k = int(entry.get("page", 0))
    lib = None if lib_dir is None else Path(lib_dir)
    tried: list[str] = []
    for key, read, check_size in _page_files(entry, lib, source):
        try:
            if files is not None and key in files:
                pages = files[key]
            else:
                pages = read(None if files is not None else k)
                if files is not None:
                    files[key] = pages
        except PageError as e:
            tried.append(str(e))
            continue
        page = next((p for p in pages if p.index == k), None)
        if page is None:
            tried.append(f"{key}: has no page {k + 1} any more")
            continue
        size = entry.get("size")
        if check_size and size and list(page.image.shape[:2]) != list(size)[:2]:
            tried.append(f"{key}: page {k + 1} is not the size the library recorded; another file")
            continue
        return rotate_page(page.image, -float(entry.get("angle_deg", 0.0)))
    if not tried:
        raise PageError("the library does not record the page's file, nor keeps a copy of it")
    raise PageError("; ".join(tried))


PageReader = Callable[[int | None], list[Page]]


def _page_files(
    entry: Mapping[str, Any], lib: Path | None, source: str | None
) -> Iterator[tuple[str, PageReader, bool]]:
    """Where a recorded page may be read, in order: (the key ``files`` caches it by, a reader of
    its pages — all, or only one —, whether the page must have the recorded size to count)."""
    stored = entry.get("stored")
    if stored is not None and lib is not None:
        rel = stored.get("path") if isinstance(stored, Mapping) else None
        yield str(lib / str(rel)), lambda only: read_stored(lib, stored, only), False
    path = str(entry.get("path") or "")
    if path and not path.startswith("ingest:"):  # an ingested piece's pages had no file
        p = Path(path)
        if not p.is_absolute() and lib is not None:
            p = lib / p
        yield path if p.is_absolute() else str(p), partial(_load, p), False
    seen = {path}
    name = str(entry.get("file") or "")
    for cand in _moved(Path(path), name, lib, source):
        if str(cand) not in seen and cand.is_file():
            seen.add(str(cand))
            yield str(cand), partial(_load, cand), True


def _load(path: Path, only: int | None) -> list[Page]:
    return load_pages(path, only=only)


def _moved(path: Path, name: str, lib: Path | None, source: str | None) -> Iterator[Path]:
    """Where a page file may be since the library was built: in the piece's ``source`` folder
    (relative to the library folder ``lib`` when not absolute) under its ``name``, and the recorded
    ``path``'s last three, then two parts (``sheets/<piece>/score.pdf``, ``<piece>/score.pdf``)
    inside the library folder or beside it (sheets moved along with the library)."""
    plain = bool(name) and Path(name).name == name and name not in (".", "..")
    if source and plain and not source.startswith("ingest:"):
        folder = Path(source)
        if folder.is_absolute():
            yield folder / name
        elif lib is not None:
            yield lib / folder / name
    if lib is None or not path.is_absolute():
        return
    parts = path.parts[1:]
    for n in (3, 2):
        if len(parts) >= n and all(p not in (".", "..") for p in parts[-n:]):
            for base in (lib, lib.parent):
                yield base.joinpath(*parts[-n:])


def read_stored(lib_dir: Path, stored: Any, only: int | None = None) -> list[Page]:
    """The pages of a library's copy of a page file (``stored``: its ``library.json`` record,
    {path, bytes}), checked before it is decoded: a well-formed name (:data:`STORED_RE`), the recorded
    size (at most :data:`MAX_STORED_BYTES`), contents whose sha256 is the name. ``only``: as
    :func:`load_pages`."""
    return pages_from_bytes(stored_bytes(lib_dir, stored), str(stored["path"]), only=only)


def stored_bytes(lib_dir: Path, stored: Any) -> bytes:
    """The checked contents of a library's copy of a page file (see :func:`read_stored`)."""
    rel = stored.get("path") if isinstance(stored, Mapping) else None
    n = stored.get("bytes") if isinstance(stored, Mapping) else None
    m = STORED_RE.match(rel) if isinstance(rel, str) else None
    if m is None or not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_STORED_BYTES:
        raise PageError(f"{lib_dir}: a malformed record of a stored page file ({stored!r:.200})")
    path = lib_dir / m.string
    try:
        size = path.stat().st_size
        if size != n:
            raise PageError(f"{path}: {size} bytes, the library recorded {n}; the copy is damaged")
        with path.open("rb") as f:
            data = f.read(n + 1)
    except OSError as e:
        raise PageError(
            f"{path}: the library's copy of the page file cannot be read ({_first_line(e)})"
        ) from None
    if len(data) != n or hashlib.sha256(data).hexdigest() != m["sha"]:
        raise PageError(f"{path}: its contents are not the page file the library stored; the copy is damaged")
    return data


def pages_from_bytes(data: bytes, name: str, pdf_dpi: float = PDF_DPI, only: int | None = None) -> list[Page]:
    """All pages of one image or PDF file held in memory (``data``, its contents); ``name`` is the
    file's name: its suffix says the type, and the pages and messages name it (``only``: as
    :func:`load_pages`)."""
    return _read(Path(name), pdf_dpi, data, only)


def _read(path: Path, pdf_dpi: float, data: bytes | None = None, only: int | None = None) -> list[Page]:
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return _load_pdf(path, pdf_dpi, data, only)
    if suffix in IMAGE_SUFFIXES:
        return _load_image(path, data, only)
    raise PageError(f"{path}: unsupported file type {suffix or '(none)'}; use PNG, JPEG, TIFF or PDF")


def page_files(folder: str | Path) -> list[Path]:
    """The page files of a folder (images and PDFs), in natural name order."""
    import re

    def natural(p: Path) -> list[object]:
        return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]

    folder = Path(folder)
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES), key=natural
    )
