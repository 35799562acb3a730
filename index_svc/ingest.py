"""Admin ingestion: add a piece (a PDF or page images) to a served library while it serves.

The pages are written to a temporary piece folder and embedded by the core library builder
(:func:`scoreid.library.build.add_folder`) with the library's own model, so the new piece is
stored in the library directory exactly as ``scoreid library add`` would store it; its rows are
then appended to the live search index.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from index_svc.library import RowMeta, ServedLibrary
from scoreid.errors import UserError

MAX_PAGES = 200
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
    from scoreid.library.build import PIECE_ID, add_folder
    from scoreid.library.store import load_piece, read_index

    if lib.path is None:
        raise IngestError(f"library {lib.name!r} was not loaded from a directory; nothing to ingest into")
    if not PIECE_ID.match(piece):
        raise IngestError(f"piece id {piece!r} must be letters, digits, '.', '_' or '-' (at most 128)")
    if piece in lib.piece_ids:
        raise IngestError(f"piece {piece!r} is already in library {lib.name!r}")
    if bool(pdf) == bool(pages):
        raise IngestError("send either a PDF or page images")
    if len(pages) > MAX_PAGES:
        raise IngestError(f"at most {MAX_PAGES} pages")
    messages: list[str] = []
    with _lock, tempfile.TemporaryDirectory(prefix="scoreid-ingest-") as tmp:
        folder = Path(tmp) / piece
        folder.mkdir()
        if pdf:
            (folder / "score.pdf").write_bytes(pdf)
        for i, data in enumerate(pages):
            (folder / f"page{i + 1:03d}{_suffix(data)}").write_bytes(data)
        (folder / "piece.json").write_text(json.dumps({"title": title or piece, "composer": composer}))
        try:
            encoder = sheet_encoder(lib)
            index = read_index(lib.path)
            status = add_folder(index, lib.path, folder, encoder, messages.append)
        except UserError as e:
            raise IngestError(str(e)) from None
        if status not in ("added", "updated"):
            raise IngestError(f"piece {piece!r} not added: " + ("; ".join(messages) or status))
        pv = load_piece(lib.path, piece)
    m = pv.meta
    n = len(pv.vectors)
    meta = RowMeta(np.zeros(n, np.int32), m["page"], m["system"], m["x"], m["y0"], m["y1"])
    lib.add_piece(piece, title or piece, pv.vectors, meta)
    return n


def _suffix(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    raise IngestError("page images must be PNG, JPEG or TIFF")
