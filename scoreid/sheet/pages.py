"""Reading sheet-music pages into grey uint8 arrays (white paper = 255, ink = 0).

``load_pages(path)`` reads one file: PNG, JPEG, TIFF (every frame of a multi-page TIFF), BMP,
or a PDF, whose pages are rasterised with pypdfium2 at ``PDF_DPI``; ``pages_from_bytes(data,
name)`` reads the same from a file's contents in memory (the type from ``name``'s suffix).
Transparent images are composited onto white. Errors a user can cause (missing, unreadable or
corrupt files, a PDF with no pages) raise :class:`PageError` with a one-line message naming the file.
``library_page(entry)`` reads a page a library records again, deskewed as the build did (the page
images of ``library show``, ``identify --plot`` and the web page).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
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


def _load_image(path: Path, data: bytes | None = None) -> list[Page]:
    buf = None if data is None else io.BytesIO(data)
    try:
        with Image.open(path if buf is None else buf) as im:
            pages = [
                Page(to_grey(frame.copy()), path, i) for i, frame in enumerate(ImageSequence.Iterator(im))
            ]
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError... on bad files
        why = _first_line(e).replace(repr(buf), repr(str(path)))  # the file's name, not the buffer's
        raise PageError(f"{path}: not a readable image ({why})") from None
    if not pages:
        raise PageError(f"{path}: contains no image")
    return pages


def _load_pdf(path: Path, dpi: float, data: bytes | None = None) -> list[Page]:
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
        for i in range(n):
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


def load_pages(path: str | Path, pdf_dpi: float = PDF_DPI) -> list[Page]:
    """All pages of one image or PDF file as grey uint8 arrays."""
    path = Path(path)
    if not path.exists():
        raise PageError(f"{path}: no such file")
    if not path.is_file():
        raise PageError(f"{path}: not a file")
    return _read(path, pdf_dpi)


def library_page(entry: Mapping[str, Any], files: dict[str, list[Page]] | None = None) -> np.ndarray:
    """The grey image of a page as a library records it (``library.json``'s ``pages[k]``: its file
    ``path``, the ``page`` within that file and the ``angle_deg`` the build deskewed it by), read from
    the file and deskewed again (same size): the coordinates of its systems and of followed positions.
    ``files``: each file's pages, read once across calls. PageError when the file cannot be read (any
    more) or lacks the page."""
    path = entry.get("path")
    if not path:
        raise PageError("the library does not record the page's file")
    if files is not None and path in files:
        pages = files[path]
    else:
        pages = load_pages(path)
        if files is not None:
            files[path] = pages
    k = int(entry.get("page", 0))
    if not 0 <= k < len(pages):
        raise PageError(f"{path}: has no page {k + 1} any more")
    return rotate_page(pages[k].image, -float(entry.get("angle_deg", 0.0)))


def pages_from_bytes(data: bytes, name: str, pdf_dpi: float = PDF_DPI) -> list[Page]:
    """All pages of one image or PDF file held in memory (``data``, its contents); ``name`` is the
    file's name: its suffix says the type, and the pages and messages name it."""
    return _read(Path(name), pdf_dpi, data)


def _read(path: Path, pdf_dpi: float, data: bytes | None = None) -> list[Page]:
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return _load_pdf(path, pdf_dpi, data)
    if suffix in IMAGE_SUFFIXES:
        return _load_image(path, data)
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
