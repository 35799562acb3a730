"""Sheet geometry of the contract: systems -> one unrolled strip -> sheet windows -> network input.

Used by the corpus builder (systems known from the engraving) and by the library builder
(systems detected from pixels) alike, so both cut exactly the same windows:

1. ``rescale_page``: scale a grey page so its staff-line spacing equals ``STAFF_SPACE_PX``.
2. ``cut_system``: a band of ``SHEET_WINDOW_H`` (160) rows centred on the system's vertical
   centre, between the system's left and right edges (white padding where the page ends).
3. ``unroll``: concatenate a piece's systems left to right into one strip; returns each system's
   x offset so positions map back to (page, system, x).
4. ``window_at`` / ``window_centres``: 160 x 200 windows centred on a strip x.

The network input these windows become (``sheet_to_network``) and the audio counterparts are the
tensor contract, ``scoreid.tensors``.

Images are uint8 grey with white paper = 255 and black ink = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from scoreid import contract as C

WHITE = 255


def rescale_page(page: np.ndarray, factor: float) -> np.ndarray:
    """Resize a grey uint8 page by ``factor`` (area-averaging when shrinking)."""
    if factor <= 0:
        raise ValueError(f"scale factor must be positive, got {factor}")
    if abs(factor - 1.0) < 1e-6:
        return page
    h, w = page.shape
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    resample = Image.Resampling.BOX if factor < 1 else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(page).resize(size, resample), dtype=np.uint8)


def scale_for_staff_space(staff_space_px: float) -> float:
    """Factor that brings a page with the given staff-line spacing to the contract's render scale."""
    if staff_space_px <= 0:
        raise ValueError(f"staff space must be positive, got {staff_space_px}")
    return C.STAFF_SPACE_PX / staff_space_px


def cut_system(
    page: np.ndarray, top: float, bottom: float, left: float, right: float, height: int = C.SHEET_WINDOW_H
) -> np.ndarray:
    """The (height, right - left) band of ``page`` centred vertically on the system, white padded."""
    centre = (top + bottom) / 2.0
    y0 = int(round(centre - height / 2.0))
    x0, x1 = int(round(left)), int(round(right))
    if x1 <= x0:
        raise ValueError(f"empty system: left {left} >= right {right}")
    out = np.full((height, x1 - x0), WHITE, np.uint8)
    ph, pw = page.shape
    sy0, sy1 = max(0, y0), min(ph, y0 + height)
    sx0, sx1 = max(0, x0), min(pw, x1)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = page[sy0:sy1, sx0:sx1]
    return out


def unroll(systems: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Concatenate system bands left to right; returns (strip, x offset of each system)."""
    if not systems:
        raise ValueError("no systems to unroll")
    offsets = np.cumsum([0] + [s.shape[1] for s in systems[:-1]]).tolist()
    return np.concatenate(list(systems), axis=1), [int(o) for o in offsets]


def window_at(strip: np.ndarray, x: float, width: int = C.SHEET_WINDOW_W) -> np.ndarray:
    """The (H, width) window of ``strip`` centred on column ``x``, white padded at the ends."""
    h, w = strip.shape
    x0 = int(round(x - width / 2.0))
    out = np.full((h, width), WHITE, np.uint8)
    s0, s1 = max(0, x0), min(w, x0 + width)
    if s1 > s0:
        out[:, s0 - x0 : s1 - x0] = strip[:, s0:s1]
    return out


def window_centres(strip_width: int, stride: float, width: int = C.SHEET_WINDOW_W) -> np.ndarray:
    """Window centres every ``stride`` px along a strip, the first at width/2 (at least one)."""
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    last = max(width / 2.0, strip_width - width / 2.0)
    return np.arange(width / 2.0, last + 1e-6, stride, dtype=np.float32)
