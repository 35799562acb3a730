"""The picture of one identified stream (``scoreid identify --plot``, ``scoreid demo``).

Three panels, top to bottom, one colour scale (seconds of audio) shared by the last two:

* **running identity** -- each of the final top pieces' share of the decayed votes over the
  audio; the legend names pieces by their title where that tells them apart, else by piece id;
* **the unrolled strip** of the top piece (its systems side by side, 160 px high) at its true
  aspect, cropped to the stretch the followed path covers and cut into stacked rows like lines
  of text, with the system starts labelled (``p1 s2``: page 1, system 2). Under each row a lane
  plots the followed position (x on the strip) against time, time running down, so moving
  forward is a line down to the right and a jump back a line to the left;
* **every page the path visits**, each with its part of the path drawn on it.

The plot prints nothing; the callers say where the file went. The helpers that decide what
is drawn (:func:`legend_labels`, :func:`followed_path`, :func:`visited_pages`,
:func:`strip_rows`) are plain functions, testable without rendering.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scoreid.identify.position import Position

# titles that say nothing about the piece (music21's default title among them)
GENERIC_TITLES = frozenset(
    {
        "",
        "music21fragment",
        "music21",
        "fragment",
        "untitled",
        "notitle",
        "title",
        "score",
        "piece",
        "unknown",
        "unnamed",
        "sheetmusic",
        "music",
    }
)
TITLE_CHARS = 40  # legend titles are cut to this many characters
CMAP = "viridis"  # time colour scale: dark = early, yellow = late

# strip rows: data units are strip px (the strip is 160 px high); above the strip a band for
# the system labels, under it the time lane
STRIP_H = 160
LABEL_BAND = 44
LANE_TOP, LANE_BOTTOM = STRIP_H + 12, STRIP_H + 132
ROW_MARGIN_PX = 150  # shown either side of the covered stretch (a window is 200 px wide)
ROW_MIN_PX = 1600  # a short path still shows this much strip (when the strip has it)
ROW_MAX_PX = 2600  # longer stretches are cut into rows of at most this width,
ROW_MAX_N = 8  # into at most this many (then wider ones, smaller on the figure: still true aspect)
JUMP_PX = 400  # a move further than this (or backwards) is drawn as a jump (dotted)

# figure layout, inches
FIG_W = 16.0
DPI = 100


def _norm(s: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", s.lower())


def shorten(text: str, n: int = TITLE_CHARS) -> str:
    """``text`` cut to at most ``n`` characters at a word boundary, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    cut = text[: n - 1]
    if " " in cut[n // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-/") + "…"


def is_generic(title: str, pid: str) -> bool:
    """True when a title says no more than the piece id does: a placeholder title ("Music21
    Fragment", "Untitled", ...), or one the id already contains ("movement2" of
    ``schoenberg-opus19-movement2``)."""
    t = _norm(title)
    return t in GENERIC_TITLES or t in _norm(pid)


def legend_labels(titles: Mapping[str, str], n: int = TITLE_CHARS) -> dict[str, str]:
    """Legend label per piece id (``titles``: piece id -> library title).

    A title that is informative and unique among these pieces is used alone (shortened to
    ``n`` characters); a generic one gives way to the piece id; a title shared by several
    pieces gets its piece id appended in brackets. The labels are unique.
    """
    informative = {pid: t for pid, t in titles.items() if not is_generic(t, pid)}
    counts: dict[str, int] = {}
    for title in informative.values():
        counts[_norm(title)] = counts.get(_norm(title), 0) + 1
    out = {}
    for pid in titles:
        t = informative.get(pid)
        if t is None:
            out[pid] = pid
        elif counts[_norm(t)] > 1:
            out[pid] = f"{shorten(t, n)} [{pid}]"
        else:
            out[pid] = shorten(t, n)
    seen: dict[str, int] = {}
    for lab in out.values():
        seen[lab] = seen.get(lab, 0) + 1
    for pid, lab in out.items():  # still equal after shortening: tell them apart by id
        if seen[lab] > 1 and lab != pid and not lab.endswith(f"[{pid}]"):
            out[pid] = f"{lab} [{pid}]"
    return out


def followed_path(history: Sequence[Any], pid: str) -> tuple[list[float], list[Position]]:
    """(times, positions) of the hops that have a followed position for ``pid``."""
    ts = [float(u.t) for u in history if pid in u.positions]
    rows = [u.positions[pid] for u in history if pid in u.positions]
    return ts, rows


def visited_pages(rows: Sequence[Position]) -> list[int]:
    """The library page indices (0-based) the followed path visits, in page order."""
    return sorted({int(r.page) for r in rows})


def strip_rows(
    xs: Sequence[float],
    strip_w: float,
    margin: float = ROW_MARGIN_PX,
    min_px: float = ROW_MIN_PX,
    max_px: float = ROW_MAX_PX,
    max_n: int = ROW_MAX_N,
) -> list[tuple[float, float]]:
    """The strip x ranges to show as rows: the covered stretch ``[min(xs), max(xs)]`` plus
    ``margin``, at least ``min_px`` wide (within the strip), cut into equal rows of at most
    ``max_px`` (but no more than ``max_n`` rows)."""
    if not len(xs):
        return []
    lo, hi = max(0.0, min(xs) - margin), min(float(strip_w), max(xs) + margin)
    if hi - lo < min_px:
        c = (lo + hi) / 2
        lo, hi = max(0.0, c - min_px / 2), min(float(strip_w), c + min_px / 2)
        if hi - lo < min_px:  # against an end of the strip: grow the other way
            lo, hi = max(0.0, hi - min_px), min(float(strip_w), lo + min_px)
    n = min(max(1, math.ceil((hi - lo) / max_px)), max_n)
    edges = np.linspace(lo, hi, n + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def system_starts(piece: Mapping[str, Any]) -> list[tuple[float, int, int]]:
    """(strip x, page index, system index) of each system's start on the strip (systems are
    unrolled page by page, in reading order)."""
    from scoreid.library.store import system_layout

    offsets = piece.get("system_offsets") or []
    return [(float(o), k, s) for o, (k, s) in zip(offsets, system_layout(dict(piece)), strict=False)]


def time_ticks(t_end: float) -> list[float]:
    """Round tick times from 0 to ``t_end`` (about five)."""
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600):
        if t_end / step <= 6:
            break
    return [float(t) for t in np.arange(0, t_end + 1e-6, step)]


def _runs(ts: Sequence[float], on: Sequence[bool]) -> list[tuple[float, float]]:
    """Time ranges of consecutive hops with ``on`` true."""
    out: list[tuple[float, float]] = []
    start = prev = None
    for t, o in zip(ts, on, strict=True):
        if o and start is None:
            start = t
        if not o and start is not None:
            out.append((start, prev if prev is not None else start))
            start = None
        prev = t
    if start is not None and prev is not None:
        out.append((start, prev))
    return out


def _fmt_runs(runs: list[tuple[float, float]], most: int = 3) -> str:
    parts = [f"{a:g} s" if a == b else f"{a:g}–{b:g} s" for a, b in runs[:most]]
    return ", ".join(parts) + (", …" if len(runs) > most else "")


def _page_images(lib: Any, pid: str, ks: Sequence[int]) -> dict[int, np.ndarray | None]:
    """The deskewed pages ``ks`` of piece ``pid`` of ``lib`` (None for one that cannot be read any
    more); each page file is read once."""
    from scoreid.sheet.pages import Page, PageError, library_page

    piece = lib.pieces[pid]
    pages: Sequence[Mapping[str, Any]] = piece["pages"]
    files: dict[str, list[Page]] = {}
    out: dict[int, np.ndarray | None] = {}
    for k in ks:
        try:
            out[k] = library_page(pages[k], files, lib_dir=lib.dir, source=piece.get("source"))
        except (PageError, OSError, IndexError, KeyError, ValueError):
            out[k] = None
    return out


def _strip_image(lib: Any, pid: str) -> np.ndarray | None:
    from PIL import Image

    from scoreid.library.store import piece_file

    path = piece_file(lib.dir, pid, ".png")
    try:
        return np.asarray(Image.open(path).convert("L"))
    except (OSError, ValueError):
        return None


class _Layout:
    """Axes placed top to bottom in inches on a figure of width ``FIG_W``."""

    def __init__(self) -> None:
        self.y = 0.0
        self.items: list[tuple[str, float, float, float, float]] = []  # (name, left, top, w, h)

    def add(self, name: str, left: float, w: float, h: float, gap_after: float = 0.0) -> None:
        self.items.append((name, left, self.y, w, h))
        self.y += h + gap_after

    def skip(self, h: float) -> None:
        self.y += h


def plot_history(history: list, lib: Any, out: Path, title: str = "") -> None:
    """Draw the running identity, the followed path on the top piece's strip and on every page
    it visits into the PNG ``out`` (see the module docstring). Prints nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    if not history:
        return
    ranking = history[-1].ranking
    top: str = ranking[0][0] if ranking else ""
    pieces = [pid for pid, _s, _v in ranking[:5]]
    labels = legend_labels({pid: lib.title(pid) for pid in pieces})
    t_end = max(max(float(u.t) for u in history), 1e-6)
    norm = Normalize(0.0, t_end)
    ts, rows = followed_path(history, top) if top else ([], [])

    # ---- what goes where (inches, from the top)
    left, right = 0.95, 0.3
    full_w = FIG_W - left - right
    lay = _Layout()
    lay.skip(0.5)
    lay.add("identity", left, full_w - 4.1, 2.9, gap_after=0.75)
    strip = segs = None
    row_w = row_h = 0.0
    if rows:
        piece = lib.pieces[top]
        strip = _strip_image(lib, top)
        strip_w = strip.shape[1] if strip is not None else float(piece.get("strip_width") or 0)
        strip_w = max(strip_w, max(r.strip_x for r in rows) + 100)
        segs = strip_rows([r.strip_x for r in rows], strip_w)
        seg_px = segs[0][1] - segs[0][0]
        data_h = LABEL_BAND + LANE_BOTTOM
        row_w = min(full_w - 0.75, 2.3 * seg_px / data_h)  # rows at most 2.3 in high
        row_h = row_w * data_h / seg_px
        lay.skip(0.65)  # section title
        for i in range(len(segs)):
            lay.add(f"row{i}", left, row_w, row_h, gap_after=0.12)
        lay.skip(0.3)
        lay.add("colorbar", left + 0.5, min(6.0, row_w - 1.0), 0.16, gap_after=1.25)
        pages = visited_pages(rows)
        ncols = min(len(pages), 4)
        images = _page_images(lib, top, pages)
        aspect = max((im.shape[0] / im.shape[1] if im is not None else 1.414) for im in images.values())
        gap = 0.35
        page_w = min((full_w - gap * (ncols - 1)) / ncols, 7.2 / aspect)
        page_h = page_w * aspect
        x0 = left + (full_w - (ncols * page_w + gap * (ncols - 1))) / 2
        for i, k in enumerate(pages):
            if i % ncols == 0 and i:
                lay.skip(page_h + 0.55)
            top_y = lay.y
            lay.items.append((f"page{k}", x0 + (i % ncols) * (page_w + gap), top_y, page_w, page_h))
        lay.skip(page_h + 0.3)
    fig_h = lay.y + 0.2

    with plt.rc_context({"font.size": 11, "axes.titlesize": 13, "axes.titleweight": "bold"}):
        fig = plt.figure(figsize=(FIG_W, fig_h))
        axes = {
            name: fig.add_axes((x / FIG_W, 1 - (y + h) / fig_h, w / FIG_W, h / fig_h))
            for name, x, y, w, h in lay.items
        }
        _draw_identity(axes["identity"], history, pieces, labels, title)
        if rows and segs is not None:
            label = labels.get(top, top)
            y_title = 1 - (lay.items[1][2] - 0.1) / fig_h
            fig.text(
                left / FIG_W,
                y_title + 0.32 / fig_h,
                f"followed position in {label}: the unrolled strip "
                f"(x {segs[0][0]:.0f}–{segs[-1][1]:.0f} of {strip_w:.0f} px, true aspect)",
                fontsize=13,
                fontweight="bold",
                va="bottom",
            )
            fig.text(
                left / FIG_W,
                y_title,
                "ticks under the strip: the followed positions; grey lane: the same "
                "positions over time (time runs down; solid: a step forward, dotted: a jump)",
                fontsize=11,
                va="bottom",
            )
            starts = system_starts(lib.pieces[top])
            for i, seg in enumerate(segs):
                draw_strip_row(axes[f"row{i}"], strip, seg, ts, rows, norm, starts, t_end)
            sm = plt.cm.ScalarMappable(norm=norm, cmap=CMAP)
            cb = fig.colorbar(sm, cax=axes["colorbar"], orientation="horizontal")
            cb.set_label("seconds of audio (colour of the followed positions, on the strip and on the pages)")
            cb.set_ticks(time_ticks(t_end))
            for k in visited_pages(rows):
                draw_page_path(axes[f"page{k}"], lib, top, rows, ts, k, norm, image=images[k])
        out.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        fig.savefig(buf, dpi=DPI, format="png")
        plt.close(fig)
    save_png(buf.getvalue(), out)


def save_png(png: bytes, out: Path) -> None:
    """Write ``png`` to ``out`` as a 256-colour PNG (the grain of scanned pages makes a full-colour
    one several times larger; no dithering, so lines and text stay clean). Near-white is made
    white first, so the background stays white."""
    from PIL import Image

    rgb = np.array(Image.open(io.BytesIO(png)).convert("RGB"))
    rgb[(rgb >= 246).all(axis=2)] = 255  # paper and background: one white
    im = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    pal = np.array((im.getpalette() or [])[: 3 * 256], np.uint8).reshape(-1, 3)
    pal[int(np.argmax(pal.astype(int).sum(axis=1)))] = 255  # the octree's lightest entry: pure white
    im.putpalette(pal.ravel().tolist())
    im.save(out, optimize=True)


def _draw_identity(
    ax: Any, history: Sequence[Any], pieces: list[str], labels: Mapping[str, str], title: str
) -> None:
    ts = [u.t for u in history]
    hi = 0.0
    for i, pid in enumerate(pieces):
        sc = [next((s for p, s, _v in u.ranking if p == pid), 0.0) for u in history]
        hi = max(hi, max(sc))
        ax.plot(ts, sc, lw=2.6 if i == 0 else 1.5, label=labels[pid], zorder=3 if i == 0 else 2)
    ax.set_xlabel("seconds of audio")
    ax.set_ylabel("share of the votes")
    ax.set_xlim(0, max(ts))
    ax.set_ylim(0, min(1.0, hi * 1.12 + 0.02))
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.grid(alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=11,
        title="final ranking (top 5)",
        title_fontsize=11,
        alignment="left",
    )
    ax.set_title(f"{title}: running identity" if title else "running identity", loc="left")


def _lane_y(t: float, t_end: float) -> float:
    return LANE_TOP + 6 + (LANE_BOTTOM - LANE_TOP - 12) * t / t_end


def draw_strip_row(
    ax: Any,
    strip: np.ndarray | None,
    seg: tuple[float, float],
    ts: Sequence[float],
    rows: Sequence[Position],
    norm: Any,
    starts: Sequence[tuple[float, int, int]],
    t_end: float,
) -> None:
    """One row: the strip between ``seg`` at true aspect, system labels above, the time lane
    under it with the hops whose strip x falls in the row."""
    a, b = seg
    if strip is not None:
        i0, i1 = int(math.floor(a)), int(math.ceil(b))
        ax.imshow(
            strip[:, i0:i1],
            cmap="gray",
            vmin=0,
            vmax=255,
            extent=(i0, i1, STRIP_H, 0),
            interpolation="antialiased",
        )
    else:
        ax.text((a + b) / 2, STRIP_H / 2, "strip image not available", ha="center", va="center", color="0.4")
    ax.axhspan(LANE_TOP, LANE_BOTTOM, color="0.95", zorder=0)
    ticks = time_ticks(t_end)
    ax.hlines([_lane_y(t, t_end) for t in ticks], a, b, color="0.8", lw=0.7, zorder=1)
    # system starts: a dotted line and "p1 s2"; the system the row starts in, in brackets
    inside = [(x, k, s) for x, k, s in starts if a <= x < b]
    before = [(x, k, s) for x, k, s in starts if x < a]
    if before and (not inside or inside[0][0] - a > 150):
        _x, k, s = before[-1]
        ax.text(a + 10, -8, f"(p{k + 1} s{s + 1})", fontsize=10, color="0.35", va="bottom")
    for x, k, s in inside:
        ax.axvline(x, color="tab:blue", lw=0.9, ls=":", zorder=1)
        ax.text(x + 10, -8, f"p{k + 1} s{s + 1}", fontsize=10, color="tab:blue", va="bottom")
    # the path: hops in this row; consecutive ones joined (solid: a step forward, dotted: a jump)
    xs = np.array([r.strip_x for r in rows], float)
    ys = np.array([_lane_y(t, t_end) for t in ts])
    tt = np.asarray(ts, float)
    inrow = (xs >= a) & (xs <= b)
    for i in range(len(xs) - 1):
        if inrow[i] and inrow[i + 1]:
            dx = xs[i + 1] - xs[i]
            jump = dx < 0 or dx > JUMP_PX
            ax.plot(
                xs[i : i + 2],
                ys[i : i + 2],
                color="0.25",
                lw=0.8 if jump else 1.3,
                ls=":" if jump else "-",
                zorder=2,
            )
    ax.scatter(
        xs[inrow],
        ys[inrow],
        c=tt[inrow],
        cmap=CMAP,
        norm=norm,
        s=22,
        edgecolors="k",
        linewidths=0.4,
        zorder=3,
    )
    # where the path is on the music: a coloured tick under the strip
    ax.scatter(
        xs[inrow],
        np.full(int(inrow.sum()), STRIP_H + 5),
        c=tt[inrow],
        cmap=CMAP,
        norm=norm,
        marker="|",
        s=60,
        linewidths=1.5,
        zorder=3,
    )
    ax.set_xlim(a, b)
    ax.set_ylim(LANE_BOTTOM, -LABEL_BAND)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.yaxis.tick_right()
    ax.set_yticks([_lane_y(t, t_end) for t in ticks[:: max(1, len(ticks) // 3)]])
    ax.set_yticklabels([f"{t:g} s" for t in ticks[:: max(1, len(ticks) // 3)]], fontsize=9)
    for sp in ax.spines.values():
        sp.set_color("0.6")


def draw_page_path(
    ax: Any,
    lib: Any,
    pid: str,
    rows: Sequence[Position],
    ts: Sequence[float],
    k: int,
    norm: Any,
    image: np.ndarray | None = None,
) -> None:
    """Library page ``k`` of ``pid`` with the part of the followed path on it (colour = time,
    the first hop of each visit and round times labelled)."""
    pages = lib.pieces[pid]["pages"]
    pg = pages[k]
    if image is None:
        image = _page_images(lib, pid, [k])[k]
    if image is not None:
        page_h, page_w = image.shape[:2]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    else:  # the source is gone: a blank page with the system boxes
        page_h, page_w = pg.get("size", [2339, 1654])[:2]
        ax.imshow(
            np.full((2, 2), 255, np.uint8), cmap="gray", vmin=0, vmax=255, extent=(0, page_w, page_h, 0)
        )
        for top, bottom, lft, rgt in pg.get("systems", []):
            ax.add_patch(matplotlib_rect(lft, top, rgt - lft, bottom - top))
        ax.text(page_w / 2, 40, "source page not available", ha="center", va="top", color="0.4")
    on = [int(r.page) == k for r in rows]
    xs = np.array([r.x for r in rows], float)
    ys = np.array([(r.y0 + r.y1) / 2 for r in rows], float)
    tt = np.asarray(ts, float)
    m = np.asarray(on, bool)
    for i in range(len(rows) - 1):
        if on[i] and on[i + 1]:
            same = rows[i].system == rows[i + 1].system and 0 <= xs[i + 1] - xs[i] <= JUMP_PX
            ax.plot(
                xs[i : i + 2],
                ys[i : i + 2],
                color="0.2",
                lw=1.2 if same else 0.7,
                ls="-" if same else ":",
                alpha=0.8,
                zorder=2,
            )
    ax.scatter(xs[m], ys[m], c=tt[m], cmap=CMAP, norm=norm, s=42, edgecolors="k", linewidths=0.5, zorder=3)
    # time labels: the first hop of each visit, and round times
    step = time_ticks(float(norm.vmax))[1] if len(time_ticks(float(norm.vmax))) > 1 else 1.0
    last_xy: list[tuple[float, float]] = []
    for i in map(int, np.flatnonzero(m)):
        first = i == 0 or not on[i - 1]
        round_t = abs(tt[i] / step - round(tt[i] / step)) < 1e-6
        if not (first or round_t):
            continue
        if any(abs(xs[i] - x) < 0.13 * page_w and abs(ys[i] - y) < 0.04 * page_h for x, y in last_xy):
            continue  # keep labels apart
        last_xy.append((xs[i], ys[i]))
        ax.annotate(
            f"{tt[i]:g} s",
            (xs[i], ys[i]),
            xytext=(0, 9),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold" if first else "normal",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            zorder=4,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    same_file = sum(p["file"] == pg["file"] for p in pages) > 1
    where = f"{pg['file']}, page {pg['page'] + 1}" if same_file else pg["file"]
    ax.set_title(
        f"page {k + 1} of {len(pages)} ({where})\n{int(m.sum())} hops: {_fmt_runs(_runs(ts, on))}",
        fontsize=11,
        fontweight="normal",
    )


def matplotlib_rect(x: float, y: float, w: float, h: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, ec="0.6", lw=0.8)
