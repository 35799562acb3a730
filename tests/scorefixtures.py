"""Test helpers: tiny Humdrum scores (a few seconds of music each), onset checks on audio, and
synthetic tone sequences (audio a stream can be fed with)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER = """!!!COM: Tester, Ann
!!!OTL: {title}
**kern\t**kern
*staff2\t*staff1
*clefF4\t*clefG2
*k[]\t*k[]
*M4/4\t*M4/4
*MM{tempo}\t*MM{tempo}
"""

# (left hand, right hand) per quarter beat; "." continues. Measure 2 has a tie (a4 tied over the
# beat: the continuation must be dropped), measure 3 a grace note before e5 and a chord.
BODY = """=1\t=1
4C\t4c
4r\t4e
4G\t4r
4r\t4cc
=2\t=2
4E\t4g
4r\t4r
4r\t[4a
4D\t4a]
=3\t=3
4r\t4b
.\t8qdd
4F\t4ee
4r\t4r
4GG\t4c 4e 4g
=4\t=4
4C\t4r
4r\t4f
4A\t4r
4r\t4ff
==\t==
*-\t*-
"""

#: sounding noteheads of BODY: all notes minus the tie continuation (the grace note may or may not
#: get its own onset; see tests)
N_SOUNDING_MIN = 21


def write_piece(path: Path, title: str = "Isolated notes", tempo: int = 120, variant: int = 0) -> Path:
    """Write a ~8 s grand-staff piece; ``variant`` 1 and 2 change some pitches (other works)."""
    body = BODY
    if variant == 1:
        body = body.replace("4cc", "4dd").replace("4ff", "4gg").replace("4G\t", "4B\t")
    elif variant == 2:
        body = body.replace("4C\t4c\n", "4D\t4d\n").replace("4E\t4g", "4F\t4a")
    path.write_text(HEADER.format(title=title, tempo=tempo) + body)
    return path


def onset_agreement(spec: np.ndarray, frames: np.ndarray) -> float:
    """Fraction of onset frames with the spectral-flux maximum (within ±3 frames) at most 1 frame away."""
    flux = np.r_[0.0, np.maximum(0.0, np.diff(spec.astype(np.float32), axis=0)).sum(axis=1)]
    ok = []
    for f in frames:
        fi = int(round(f))
        lo = max(0, fi - 3)
        peak = lo + int(np.argmax(flux[lo : fi + 4]))
        ok.append(abs(peak - f) <= 1.0)
    return float(np.mean(ok))


def isolated_onsets(onsets: np.ndarray, gap_s: float = 0.3) -> np.ndarray:
    """The distinct onsets (score seconds) with no other onset within ``gap_s``."""
    u = np.unique(np.round(onsets, 3))
    d = np.diff(u)
    iso = np.ones(len(u), bool)
    iso[1:] &= d >= gap_s
    iso[:-1] &= d >= gap_s
    return u[iso]


def tones(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Four decaying sine tones per second at seeded pitches (two octaves above A3), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for k in range(int(seconds * 4)):
        f = 220 * 2 ** (rng.integers(0, 24) / 12)
        m = (t >= k / 4) & (t < k / 4 + 0.4)
        x[m] += 0.2 * np.sin(2 * np.pi * f * t[m]) * np.exp(-3 * (t[m] - k / 4))
    return x.astype(np.float32)


def ink_fraction(page: np.ndarray, x: float, y: float, w: float, h: float) -> float:
    """Fraction of dark pixels (< 128) inside a notehead box."""
    x0, x1 = int(round(x - w / 2)), int(round(x + w / 2))
    y0, y1 = int(round(y - h / 2)), int(round(y + h / 2))
    return float((page[max(0, y0) : y1, max(0, x0) : x1] < 128).mean())


def noteheads_on_ink(eng, dx: float = 0.0, dy: float = 0.0) -> float:
    """Share of an engraving's note heads whose box (moved by dx, dy box sizes) is at least 45 % ink."""
    fr = [ink_fraction(eng.pages[n.page], n.x + dx * n.w, n.y + dy * n.h, n.w, n.h) for n in eng.notes]
    return float(np.mean(np.array(fr) >= 0.45))
