"""Admin ingestion: add a piece (a PDF or page images) to a served library while it serves.

The request is checked (id, text, page count and pixels, from the headers) before anything is
decoded. The uploaded files are then decoded in memory and the piece built by the core library
builder (:func:`scoreid.library.build.piece_from_files`: pages -> systems -> strip -> windows ->
embeddings, with the library's own model), as ``scoreid library add`` builds a folder; the piece is
stored in the library directory (whole or not at all), with a copy of the files sent, from which the
page-turner draws its pages (``LIB_DIR/pages/<piece>/``), and appended to the served library and
its search backend (:meth:`index_svc.library.ServedLibrary.add`).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

from index_svc.library import ServedLibrary
from scoreid.errors import UserError

MAX_PAGES = 200  #: pages per ingest (image files, or pages of the PDF)
MAX_PAGE_PIXELS = 60_000_000  #: pixels of one page as rendered (A3 at 600 dpi is 42 M)
MAX_TEXT = 200  #: characters of a title or composer
_encoders: dict[str, Any] = {}
_lock = threading.Lock()


class IngestError(ValueError):
    """A request that cannot be ingested (bad id, duplicate, no music found); message for the caller."""


def sheet_encoder(lib: ServedLibrary) -> Any:
    from scoreid.inference import load_model

    if lib.model_dir is None:
        raise IngestError(f"library {lib.name!r} was not loaded from a directory; nothing to ingest into")
    key = str(lib.model_dir)
    if key not in _encoders:
        _encoders[key] = load_model(lib.model_dir, "onnx")
    return _encoders[key]


def ingest(lib: ServedLibrary, piece: str, title: str, composer: str, pdf: bytes, pages: list[bytes]) -> int:
    """Embed and add one piece; returns the number of windows added."""
    from scoreid.library.build import PIECE_ID, piece_from_files, piece_id_for
    from scoreid.sheet.systems import NoSystemsError

    if lib.path is None:
        raise IngestError(f"library {lib.name!r} was not loaded from a directory; nothing to ingest into")
    if not PIECE_ID.match(piece) or piece_id_for(Path(piece)) != piece:
        raise IngestError(
            "piece id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit and "
            "not ending in '.' or '-'"
        )
    if piece in lib.piece_ids:
        raise IngestError(f"piece {piece!r} is already in library {lib.name!r}")
    title, composer = clean_text(title, "title"), clean_text(composer, "composer")
    if bool(pdf) == bool(pages):
        raise IngestError("send either a PDF or page images")
    if len(pages) > MAX_PAGES:
        raise IngestError(f"at most {MAX_PAGES} pages")
    check_pages(pdf, pages)
    files = (
        [("score.pdf", pdf)] if pdf else [(f"page{i + 1:03d}{_suffix(d)}", d) for i, d in enumerate(pages)]
    )
    messages: list[str] = []
    with _lock:
        if piece in lib.piece_ids:  # ingested while this request waited
            raise IngestError(f"piece {piece!r} is already in library {lib.name!r}")
        try:
            encoder = sheet_encoder(lib)
            built = piece_from_files(
                piece, files, encoder, lib.library.stride, lib.model_sha256, title, composer, messages.append
            )
        except NoSystemsError as e:
            messages.append(f"warning: {e}; piece {piece} skipped")
            raise IngestError(f"piece {piece!r} not added: " + "; ".join(messages)) from None
        except UserError as e:
            raise IngestError(str(e)) from None
        try:
            lib.add(built)
        except UserError as e:  # the library directory changed under us (a piece of that id)
            raise IngestError(f"piece {piece!r} not added: {e}") from None
    return int(built.entry["n_windows"])


def clean_text(text: str, what: str) -> str:
    """A title or composer as served to every client: printable, no markup, bounded."""
    text = " ".join(text.split())
    if len(text) > MAX_TEXT:
        raise IngestError(f"{what} longer than {MAX_TEXT} characters")
    if any(not ch.isprintable() or ch in "<>" for ch in text):
        raise IngestError(f"{what} must be printable text without '<' or '>'")
    return text


def check_pages(pdf: bytes, pages: list[bytes]) -> None:
    """Page-count and pixel caps, read from the headers before anything is decoded or rendered."""
    from PIL import Image

    from scoreid.sheet.pages import PDF_DPI

    if pdf:
        import pypdfium2 as pdfium

        try:
            doc = pdfium.PdfDocument(pdf)
        except Exception:  # noqa: BLE001  (pdfium raises its own errors on junk)
            raise IngestError("not a readable PDF") from None
        try:
            if len(doc) > MAX_PAGES:
                raise IngestError(f"the PDF has {len(doc)} pages; at most {MAX_PAGES}")
            for i in range(len(doc)):
                w, h = doc[i].get_size()  # points
                if (w * PDF_DPI / 72.0) * (h * PDF_DPI / 72.0) > MAX_PAGE_PIXELS:
                    raise IngestError(f"PDF page {i + 1} is too large ({w:.0f} x {h:.0f} pt)")
        finally:
            doc.close()
    for i, data in enumerate(pages):
        _suffix(data)
        try:
            with Image.open(io.BytesIO(data)) as im:
                n = im.size[0] * im.size[1] * max(1, getattr(im, "n_frames", 1))
        except IngestError:
            raise
        except Exception:  # noqa: BLE001  (PIL raises many kinds on junk)
            raise IngestError(f"page {i + 1} is not a readable image") from None
        if n > MAX_PAGE_PIXELS:
            raise IngestError(f"page {i + 1} has {n} pixels; at most {MAX_PAGE_PIXELS}")


def _suffix(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    raise IngestError("page images must be PNG, JPEG or TIFF")
