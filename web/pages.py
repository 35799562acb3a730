"""The library's page images, as the engine's coordinates see them.

A position (:class:`scoreid.identify.position.Position`) and a page's system boxes
(``library.json``: ``pages[k].systems``) are in px of the *deskewed* page at the resolution it was
read at (a PDF at :data:`scoreid.sheet.pages.PDF_DPI`): :func:`render_page` reads the page from the
library's copy of its file (``LIB_DIR/pages/``; for a library built before it kept copies, the file
where it was) and deskews it as the library build did (:func:`scoreid.sheet.pages.library_page`),
and sends it as PNG, shrunk to at most :data:`MAX_WIDTH` px wide (the page scales coordinates by the
page's ``size``, which the library stores). Rendered pages are kept (:data:`CACHED` of them).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

from PIL import Image

from scoreid.library.store import Library
from scoreid.sheet.pages import PageError, library_page

MAX_WIDTH = 1400  #: px of a served page image (a tablet's width at 2x; phones scale it down)
CACHED = 32  #: rendered pages kept in memory


class PageNotFound(LookupError):
    """No such piece or page, or its file cannot be read now (the message says which)."""


def page_entry(lib: Library, pid: str, k: int) -> dict[str, Any]:
    piece = lib.pieces.get(pid)
    if piece is None:
        raise PageNotFound(f"no piece {pid!r} in the library")
    pages = piece.get("pages") or []
    if not 0 <= k < len(pages):
        raise PageNotFound(f"piece {pid!r} has {len(pages)} pages; no page {k}")
    return dict(pages[k])


def render_page(lib: Library, pid: str, k: int) -> bytes:
    """Page ``k`` of piece ``pid`` (over the piece's pages) as PNG bytes (see the module docstring)."""
    try:
        source = (lib.pieces.get(pid) or {}).get("source")
        grey = library_page(page_entry(lib, pid, k), lib_dir=lib.dir, source=source)
    except PageError as e:
        raise PageNotFound(f"piece {pid!r} page {k}: {e}") from None
    im = Image.fromarray(grey)
    if im.width > MAX_WIDTH:
        im = im.resize((MAX_WIDTH, round(im.height * MAX_WIDTH / im.width)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class PageCache:
    """Rendered pages by (piece, page), the least recently used dropped first; thread-safe."""

    def __init__(self, lib: Library, size: int = CACHED):
        self.lib = lib
        self.size = size
        self._pages: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, pid: str, k: int) -> bytes:
        key = (pid, k)
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
        png = render_page(self.lib, pid, k)
        with self._lock:
            self._pages[key] = png
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)
        return png
