"""Staff-system detection from page pixels alone, as classic OMR front ends do it.

Steps (``detect_systems``):

1. **Binarise** with Otsu's threshold (after checking the page is not blank).
2. **Deskew** (:mod:`scoreid.sheet.deskew`): the angle (within ``MAX_SKEW_DEG``) of the staff lines
   themselves, the median slope of the page's straight thin line segments (the projection-profile
   search only where too few segments can be fitted); the page is rotated about its centre (no
   expansion), so positions on the deskewed page are those of the unrotated original.
3. **Staff-line spacing** from vertical run lengths: the most frequent (black run + following
   white run) length is the distance between staff-line centres (Fujinaga's staff-space
   estimate); refined later to sub-pixel precision from the detected lines themselves.
4. **Staff lines**: keep only ink in long horizontal runs (>= ``LINE_MIN_SPACES`` staff spaces,
   after bridging one-pixel gaps from noise), project per row, group rows into lines.
5. **Staves**: chains of 5 lines with near-constant spacing (the strongest 5 of a longer chain, so
   beams or ledger lines next to a staff do not shift it). Small-size staves (ossias) and text
   never form such chains at the page's spacing.
6. **Systems**: consecutive staves joined by an unbroken vertical line crossing the gap between
   them (the system-start barline or barlines of a piano staff) form one system; unconnected
   staves are single-staff systems. A system with twice the staves of the page's others and a
   gap between systems in its middle is two systems (``split_merged``).

``extract_systems`` then rescales the deskewed page so its staff spacing equals the contract's
``STAFF_SPACE_PX`` and cuts each system with :func:`scoreid.sheet.strip.cut_system` — the same
geometry the corpus builder uses for its engraved renders. The band is centred on the system, or,
on a system of more than two staves (an empty or ossia staff above a piano's grand staff, Ravel's
and Liszt's three- and four-staff systems), on the adjacent pair of staves with the most note ink
(:func:`band_span`): the 160-row band holds a grand staff, and centred on three staves it would
show the middle one with halves of the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scoreid import contract as C
from scoreid.sheet import strip as S
from scoreid.sheet.deskew import projection_angle, rotate_page, staff_line_angle

MAX_SKEW_DEG = 5.0
LINE_MIN_SPACES = 3.0  #: a staff-line run spans at least this many staff spaces
SPACING_TOL = 0.22  #: relative tolerance of line spacing within a staff
MIN_STAFF_SPACE_PX = 3.0  #: below this a page is too coarse to read staves
MIN_INK_CONTRAST = 40  #: grey levels between paper and ink; less is a blank page
MIN_PAPER_FRACTION = 0.5  #: at least this much of a page is paper (within 25 grey levels of the median)
MAX_INK_FRACTION = 0.35  #: engraved or scanned music pages are mostly paper
MIN_STAFF_WIDTH = 0.15  #: a staff spans at least this fraction of the page width
BARLINE_MIN_COVER = 0.98  #: a barline joining two staves is ink on this much of the gap between them
SPLIT_GAP_RATIO = 1.25  #: see split_merged
BAND_STAVES = 2  #: the staves a band shows (a piano's grand staff); see band_span
STAFF_INK_MARGIN = 2.0  #: staff spaces above and below a staff whose ink counts as its notes
#: The version of the cut from a detected system to its band: part of a library piece's
#: fingerprint, so a library built by an older cut embeds its pieces again.
BAND_VERSION = 2


class NoSystemsError(ValueError):
    """A page with no detectable staff systems (blank, or not sheet music)."""


@dataclass
class Staff:
    lines: np.ndarray  #: y of the 5 line centres (deskewed page px)
    left: float
    right: float

    @property
    def top(self) -> float:
        return float(self.lines[0])

    @property
    def bottom(self) -> float:
        return float(self.lines[-1])


@dataclass
class System:
    """A staff system on the deskewed page, in page px: staff-line top/bottom and left/right edges."""

    top: float
    bottom: float
    left: float
    right: float
    staves: list[Staff] = field(default_factory=list)

    @property
    def centre(self) -> float:
        return (self.top + self.bottom) / 2.0

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass
class PageLayout:
    """Detection result for one page."""

    angle_deg: float  #: rotation applied to deskew (the page was rotated by -angle_deg)
    staff_space: float  #: staff-line spacing, page px
    line_thickness: float
    systems: list[System]
    deskewed: np.ndarray  #: the deskewed grey page the coordinates refer to


# ---------------------------------------------------------------------------- binarisation
def ink_levels(grey: np.ndarray) -> tuple[float, float, bool]:
    """(paper grey, ink grey, inverted?) of a page. Raises :class:`NoSystemsError` if blank."""
    sample = grey[::2, ::2] if grey.size > 4096 else grey
    hist = np.bincount(np.asarray(sample, np.uint8).reshape(-1), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist) / max(hist.sum(), 1.0)
    paper = float(np.searchsorted(cdf, 0.5))
    inverted = paper < 128
    if inverted:
        hist, paper = hist[::-1], 255.0 - paper
        cdf = np.cumsum(hist) / max(hist.sum(), 1.0)
    ink_level = float(np.searchsorted(cdf, 0.001))
    if paper - ink_level < MIN_INK_CONTRAST:
        raise NoSystemsError("blank page (no ink)")
    lo, hi = int(max(0, paper - 25)), int(min(255, paper + 25))
    if hist[lo : hi + 1].sum() / max(hist.sum(), 1.0) < MIN_PAPER_FRACTION:
        raise NoSystemsError("no staff lines found (not a sheet-music page: no uniform paper background)")
    return paper, ink_level, inverted


def binarise(grey: np.ndarray, smooth_axis: int | None = None, frac: float = 0.3) -> np.ndarray:
    """Ink mask (True = ink). Raises :class:`NoSystemsError` for a page without contrast.

    The threshold sits ``frac`` of the way from paper (median grey) to ink (0.1 percentile), on
    the paper side of Otsu's: thin staff lines and barlines anti-aliased across two pixel rows (or
    blurred by a scanner) are half-grey and must still count as ink. ``smooth_axis`` first
    averages 5 px along rows (1, for horizontal lines) or columns (0, for vertical lines), which
    suppresses noise but keeps lines along that axis.
    """
    from scipy.ndimage import uniform_filter1d

    paper, ink_level, inverted = ink_levels(grey)
    g = (255 - grey) if inverted else grey
    if smooth_axis is not None:
        g = uniform_filter1d(g.astype(np.float32), 5, axis=smooth_axis, mode="nearest")
    return np.asarray(g <= paper - frac * (paper - ink_level))


# ------------------------------------------------------------------------------- deskew
def deskew_angle(hink: np.ndarray, ink: np.ndarray, max_deg: float = MAX_SKEW_DEG) -> float:
    """The page's rotation in degrees (positive = content rotated counter-clockwise): the fitted
    slope of its staff lines in the horizontal-line ink ``hink``
    (:func:`scoreid.sheet.deskew.staff_line_angle`), or, on a page with too few straight line
    segments to fit, the projection-profile search on the ink mask ``ink``."""
    if max_deg <= 0:
        return 0.0
    # on a reduced copy of a large page (speed): lines stay 2 px or more, segments long
    step = max(1, int(round(max(hink.shape) / 2000)))
    lines = hink[::step, ::step]
    try:
        space, thick = estimate_staff_space(lines)
    except NoSystemsError:
        space = 0.0
    angle = staff_line_angle(lines, space, thick, max_deg) if space >= MIN_STAFF_SPACE_PX else None
    if angle is not None:
        return angle
    step = max(1, int(max(ink.shape) // 1600))
    return projection_angle(ink[::step, ::step], max_deg)


# ----------------------------------------------------------------------------- run lengths
def _runs_1d(mask: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along ``axis``: (line index, start, length) arrays."""
    m = mask if axis == 1 else mask.T
    n, w = m.shape
    padded = np.zeros((n, w + 2), np.int8)
    padded[:, 1:-1] = m
    d = np.diff(padded, axis=1)
    sr, sc = np.nonzero(d == 1)
    er, ec = np.nonzero(d == -1)
    # both come out row-major sorted, runs pair up one to one
    return sr, sc, ec - sc


def estimate_staff_space(ink: np.ndarray) -> tuple[float, float]:
    """(staff-line distance, line thickness) from vertical black/white run statistics."""
    cols = ink[:, :: max(1, ink.shape[1] // 400)]
    n, w = cols.T.shape
    padded = np.zeros((n, w + 2), np.int8)
    padded[:, 1:-1] = cols.T
    d = np.diff(padded, axis=1)
    sr, sc = np.nonzero(d == 1)  # black run starts
    _, ec = np.nonzero(d == -1)  # black run ends
    black = ec - sc
    if len(black) < 10:
        raise NoSystemsError("no staff lines found (too little ink)")
    thick = int(np.argmax(np.bincount(black)))
    # black run + following white run, within the same column
    same = sr[1:] == sr[:-1]
    pair = (sc[1:] - sc[:-1])[same]  # start-to-start distance of consecutive black runs
    pair = pair[(pair >= 2) & (pair < ink.shape[0] // 8)]
    if len(pair) == 0:
        raise NoSystemsError("no staff lines found (no repeated horizontal lines)")
    hist = np.bincount(pair).astype(np.float64)
    # mode of the 3-bin sum: at small spacings (7 px) the true distance splits over two bins and a
    # single-bin mode can pick the double distance (measured on contract-scale bands)
    k = int(np.argmax(np.convolve(hist, np.ones(3), mode="same")))
    # sub-pixel: weighted mean around the mode
    lo, hi = max(0, k - 1), min(len(hist), k + 2)
    dist = float(np.dot(np.arange(lo, hi), hist[lo:hi]) / hist[lo:hi].sum())
    return dist, float(max(thick, 1))


def long_horizontal(ink: np.ndarray, min_len: int, bridge: int) -> np.ndarray:
    """Ink pixels belonging to horizontal runs of at least ``min_len`` px (gaps <= ``bridge`` closed)."""
    m = ink
    if bridge > 0:
        # close short white gaps along rows: white runs of length <= bridge between ink
        r, s, ln = _runs_1d(~ink, axis=1)
        keep = (ln <= bridge) & (s > 0) & (s + ln < ink.shape[1])
        m = ink.copy()
        _paint(m, r[keep], s[keep], ln[keep], True)
    r, s, ln = _runs_1d(m, axis=1)
    out = np.zeros_like(ink)
    keep = ln >= min_len
    _paint(out, r[keep], s[keep], ln[keep], True)
    return out & m


def _paint(mask: np.ndarray, rows: np.ndarray, starts: np.ndarray, lengths: np.ndarray, value: bool) -> None:
    """Set runs in a 2-D bool mask (row-wise) via a cumulative-sum trick."""
    if len(rows) == 0:
        return
    h, w = mask.shape
    acc = np.zeros(h * (w + 1), np.int32)
    base = rows * (w + 1)
    np.add.at(acc, base + starts, 1)
    np.add.at(acc, base + starts + lengths, -1)
    on = np.cumsum(acc).reshape(h, w + 1)[:, :w] > 0
    mask[on] = value


# ----------------------------------------------------------------------------- staff lines
def find_lines(
    hmask: np.ndarray, min_count: float, space: float, thick: float
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of the row projection of horizontal-line ink: (centre y, strength) of each line.

    A line is a local maximum (within a third of a staff space) of at least ``min_count``; its
    centre is the weighted mean of the adjacent rows holding at least half the peak, so lines
    anti-aliased over two rows get sub-pixel centres and beams hugging a line do not drag it.
    """
    from scipy.ndimage import maximum_filter1d

    proj = hmask.sum(axis=1).astype(np.float64)
    r = max(1, int(space / 3))
    cand = np.flatnonzero((proj >= min_count) & (proj >= maximum_filter1d(proj, 2 * r + 1, mode="constant")))
    # non-maximum suppression, strongest first, so weak rows (beams) never mask a line
    taken: list[int] = []
    for y in sorted((int(v) for v in cand), key=lambda v: -proj[v]):
        if all(abs(y - t) > r for t in taken):
            taken.append(y)
    taken.sort()
    centres: list[float] = []
    strength: list[float] = []
    reach = int(np.ceil(thick)) + 2
    for y in taken:
        # the contiguous rows around the peak holding at least half of it
        a = y
        while a > max(0, y - reach) and proj[a - 1] >= 0.5 * proj[y]:
            a -= 1
        b = y + 1
        while b < min(len(proj), y + reach + 1) and proj[b] >= 0.5 * proj[y]:
            b += 1
        w = proj[a:b]
        centres.append(float(np.dot(np.arange(a, b), w) / w.sum()))
        strength.append(float(proj[y]))
    return np.asarray(centres), np.asarray(strength)


def find_staves(centres: np.ndarray, strength: np.ndarray, space: float) -> list[np.ndarray]:
    """Chains of 5 lines spaced ``space`` (+- SPACING_TOL); returns the line centres of each staff."""
    used = np.zeros(len(centres), bool)
    staves: list[np.ndarray] = []
    lo, hi = space * (1 - SPACING_TOL) - 1, space * (1 + SPACING_TOL) + 1  # +-1: pixel rounding
    for i in range(len(centres)):
        if used[i]:
            continue
        chain = [i]
        while True:
            j = chain[-1]
            d = centres - centres[j]
            cand = np.flatnonzero((d >= lo) & (d <= hi) & ~used)
            if len(cand) == 0:
                break
            chain.append(int(cand[np.argmin(np.abs(d[cand] - space))]))
        if len(chain) < 5:
            continue
        # the strongest 5 consecutive lines of the chain, with the most regular spacing
        best, best_score = 0, -np.inf
        for k in range(len(chain) - 4):
            idx = chain[k : k + 5]
            gaps = np.diff(centres[idx])
            score = strength[idx].sum() - strength[idx].mean() * 5 * (gaps.std() / space)
            if score > best_score:
                best, best_score = k, score
        idx = chain[best : best + 5]
        if strength[idx].min() < 0.25 * strength[idx].max():
            continue
        if np.diff(centres[idx]).std() > 0.1 * space + 0.5:  # staff lines are evenly spaced
            continue
        used[chain] = True
        staves.append(centres[idx])
    staves.sort(key=lambda ls: ls[0])
    return staves


def thin_line_fraction(ink: np.ndarray, staff: Staff, space: float, thick: float) -> float:
    """Mean over the 5 lines of the fraction of the staff's columns where the line is thin ink:
    the vertical ink run through the line row (+-1) is at most ``max(2 * thick + 2, space / 4)``.
    Staff lines are thin wherever no symbol crosses them (also when faint and broken by noise);
    a row of text, whose letters merge into a band as tall as the x-height, is not."""
    a, b = int(staff.left), int(staff.right)
    if b <= a:
        return 0.0
    y0 = max(0, int(staff.top - space))
    y1 = min(ink.shape[0], int(staff.bottom + space) + 1)
    region = ink[y0:y1, a:b]
    # vertical run length at every ink pixel of the region: ink above + ink below - 1
    up = np.zeros(region.shape, np.int32)
    down = np.zeros(region.shape, np.int32)
    up[0] = region[0]
    for i in range(1, len(region)):
        up[i] = (up[i - 1] + 1) * region[i]
    down[-1] = region[-1]
    for i in range(len(region) - 2, -1, -1):
        down[i] = (down[i + 1] + 1) * region[i]
    runlen = np.where(region, up + down - 1, 0)
    limit = max(2 * thick + 2, space / 4)
    fr = []
    for y in staff.lines:
        r = int(round(y)) - y0
        rows = runlen[max(0, r - 1) : r + 2]
        thin = ((rows > 0) & (rows <= limit)).any(axis=0)
        fr.append(float(thin.mean()))
    return float(np.mean(fr))


def staff_extent(hmask: np.ndarray, lines: np.ndarray, thick: float, space: float) -> tuple[float, float]:
    """Left/right x of a staff: columns where at least 3 of its 5 lines have horizontal ink."""
    h = hmask.shape[0]
    r = max(1, int(round(thick / 2 + 1)))
    cover = np.zeros(hmask.shape[1], np.int32)
    for y in lines:
        a, b = max(0, int(round(y)) - r), min(h, int(round(y)) + r + 1)
        cover += hmask[a:b].any(axis=0)
    cols = np.flatnonzero(cover >= 3)
    if len(cols) == 0:
        return 0.0, 0.0
    # ignore stray bits far from the main body: take the longest stretch allowing gaps < 2 spaces
    gaps = np.flatnonzero(np.diff(cols) > 2 * space)
    bounds = np.split(cols, gaps + 1)
    body = max(bounds, key=lambda b: b[-1] - b[0])
    return float(body[0]), float(body[-1] + 1)


def connected(ink: np.ndarray, upper: Staff, lower: Staff, thick: float, space: float) -> bool:
    """Whether one unbroken vertical line crosses the whole gap between two staves (same system).

    Unbroken: ink on at least ``BARLINE_MIN_COVER`` of the gap's rows. A looser test (92 %) let a
    beam or stem of one system that stops a few px short of the other system's barline, or the
    stems of ledger-line chords meeting in the gap, pass as a barline and merge two systems
    (measured on densely set pages: 92-95 % of a gap for such columns, 100 % for every true one)."""
    y0 = int(round(upper.bottom + thick + 1))
    y1 = int(round(lower.top - thick - 1))
    if y1 <= y0:
        return True
    x0 = int(max(0, min(upper.left, lower.left) - 2 * space))
    x1 = int(min(ink.shape[1], max(upper.right, lower.right) + 1))
    band = ink[y0:y1, x0:x1]
    # tolerate a residual skew / blur: a column counts as ink where x-1..x+1 has ink
    wide = band.copy()
    wide[:, 1:] |= band[:, :-1]
    wide[:, :-1] |= band[:, 1:]
    frac = wide.mean(axis=0)
    return bool((frac >= BARLINE_MIN_COVER).any())


def group_systems(ink: np.ndarray, staves: list[Staff], thick: float, space: float) -> list[System]:
    """Consecutive staves joined by a barline form a system; then :func:`split_merged`."""
    systems: list[System] = []
    group: list[Staff] = []
    for st in staves:
        if group and connected(ink, group[-1], st, thick, space):
            group.append(st)
            continue
        if group:
            systems.append(_system(group))
        group = [st]
    if group:
        systems.append(_system(group))
    return split_merged(systems)


def split_merged(systems: list[System]) -> list[System]:
    """Split in two a system holding twice the staves of the page's other systems (``k``, their
    most common count) whose gap between staves ``k`` and ``k + 1`` looks like a gap between
    systems: ``SPLIT_GAP_RATIO`` times its other gaps and every gap inside the page's other systems,
    and at least the page's median gap between systems over ``SPLIT_GAP_RATIO``. Whatever joined
    the two halves (a margin line across both, a bracket spanning the page) was not a system's
    barline. Not for pages of single staves (``k`` = 1): they have no gaps inside systems to compare."""
    counts = [len(s.staves) for s in systems]
    spans = [b.top - a.bottom for a, b in zip(systems[:-1], systems[1:], strict=True)]
    between = float(np.median(spans)) if spans else 0.0
    out: list[System] = []
    for i, s in enumerate(systems):
        others = counts[:i] + counts[i + 1 :]
        k = max(set(others), key=others.count) if others else 0
        if k < 2 or len(s.staves) != 2 * k or others.count(k) * 2 < len(others):
            out.append(s)
            continue
        gaps = _gaps(s.staves)
        middle = gaps[k - 1]
        inside = gaps[: k - 1] + gaps[k:]
        inside += [g for j, o in enumerate(systems) if j != i for g in _gaps(o.staves)]
        if middle >= SPLIT_GAP_RATIO * max(inside, default=0.0) and middle * SPLIT_GAP_RATIO >= between:
            out += [_system(s.staves[:k]), _system(s.staves[k:])]
        else:
            out.append(s)
    return out


def _gaps(staves: list[Staff]) -> list[float]:
    return [b.top - a.bottom for a, b in zip(staves[:-1], staves[1:], strict=True)]


def _system(staves: list[Staff]) -> System:
    return System(
        top=staves[0].top,
        bottom=staves[-1].bottom,
        left=min(s.left for s in staves),
        right=max(s.right for s in staves),
        staves=list(staves),
    )


# ---------------------------------------------------------------------------------- API
def detect_systems(grey: np.ndarray, max_skew_deg: float = MAX_SKEW_DEG) -> PageLayout:
    """Detect the staff systems of a grey uint8 page. Raises :class:`NoSystemsError` if none."""
    grey = np.asarray(grey, np.uint8)
    if grey.ndim != 2 or min(grey.shape) < 32:
        raise NoSystemsError(f"page too small ({grey.shape})")
    ink = binarise(grey)
    if ink.mean() > MAX_INK_FRACTION:
        raise NoSystemsError(f"no staff lines found (not sheet music: {ink.mean():.0%} of the page is dark)")
    hink = binarise(grey, smooth_axis=1, frac=0.15)  # for horizontal lines, faint ones too
    angle = deskew_angle(hink, ink, max_skew_deg)
    if abs(angle) >= 0.02:
        grey = rotate_page(grey, -angle)
        hink = binarise(grey, smooth_axis=1, frac=0.15)
    else:
        angle = 0.0
    hink[1:] |= hink[:-1].copy()  # a thin line split over two rows becomes one solid line
    space, thick = estimate_staff_space(hink)
    if space < MIN_STAFF_SPACE_PX:
        raise NoSystemsError(f"staff spacing {space:.1f} px is too small to read (resolution too low)")
    bridge = max(1, int(round(space / 6)))
    hmask = long_horizontal(hink, int(round(LINE_MIN_SPACES * space)), bridge)
    centres, strength = find_lines(hmask, max(4 * space, 0.02 * grey.shape[1]), space, thick)
    if len(centres):
        # lines much weaker than the page's strongest are not staff lines (e.g. beams, hairpins)
        keep = strength >= 0.12 * np.percentile(strength, 90)
        centres, strength = centres[keep], strength[keep]
    line_sets = find_staves(centres, strength, space)
    if not line_sets:
        raise NoSystemsError("no staff lines found (not sheet music?)")
    space = float(np.median([(ls[-1] - ls[0]) / 4.0 for ls in line_sets]))
    staves = []
    for ls in line_sets:
        left, right = staff_extent(hmask, ls, thick, space)
        st = Staff(ls, left, right)
        if (
            right - left >= max(6 * space, MIN_STAFF_WIDTH * grey.shape[1])
            and thin_line_fraction(hink, st, space, thick) >= 0.4
        ):
            staves.append(st)
    if not staves:
        raise NoSystemsError("no staff lines found (not sheet music?)")
    systems = group_systems(binarise(grey, smooth_axis=0, frac=0.15), staves, thick, space)
    return PageLayout(angle, space, thick, systems, grey)


def staff_ink(ink: np.ndarray, staff: Staff, space: float, thick: float) -> float:
    """The note ink of one staff: the fraction of dark pixels from ``STAFF_INK_MARGIN`` spaces above
    it to as far below, between its left and right ends, with the rows of its five lines left out
    (every staff has those)."""
    h, w = ink.shape
    y0 = max(0, int(np.floor(staff.top - STAFF_INK_MARGIN * space)))
    y1 = min(h, int(np.ceil(staff.bottom + STAFF_INK_MARGIN * space)) + 1)
    x0, x1 = max(0, int(round(staff.left))), min(w, int(round(staff.right)))
    if y1 <= y0 or x1 <= x0:
        return 0.0
    rows = np.arange(y0, y1, dtype=np.float64)
    on_line = (np.abs(rows[:, None] - np.asarray(staff.lines, np.float64)[None, :]) <= thick / 2 + 1).any(
        axis=1
    )
    region = ink[y0:y1, x0:x1][~on_line]
    return float(region.mean()) if region.size else 0.0


def band_span(system: System, ink: np.ndarray, space: float, thick: float) -> tuple[float, float, int]:
    """(top, bottom, first staff) the system's band is centred on: the whole system when it has at
    most ``BAND_STAVES`` staves, else the ``BAND_STAVES`` adjacent staves with the most note ink
    (:func:`staff_ink`; of equals, the lowest — a piano part sits below a voice or an ossia)."""
    st = system.staves
    if len(st) <= BAND_STAVES:
        return system.top, system.bottom, 0
    inks = [staff_ink(ink, s, space, thick) for s in st]
    n = len(st) - BAND_STAVES + 1
    best = max(range(n), key=lambda i: (round(sum(inks[i : i + BAND_STAVES]), 9), i))
    return st[best].top, st[best + BAND_STAVES - 1].bottom, best


@dataclass
class SystemCut:
    """One system cut at the contract scale: ``band`` uint8 (160, w); box in deskewed page px."""

    band: np.ndarray
    index: int  #: system index on the page
    box: tuple[float, float, float, float]  #: (top, bottom, left, right), deskewed page px
    scale: float  #: page px -> contract px
    first_staff: int = 0  #: the band is centred on the staves from this one (:func:`band_span`)


def extract_systems(layout: PageLayout) -> list[SystemCut]:
    """Rescale the deskewed page to the contract staff spacing and cut every system's band
    (:func:`band_span`)."""
    f = S.scale_for_staff_space(layout.staff_space)
    page = S.rescale_page(layout.deskewed, f)
    many = any(len(s.staves) > BAND_STAVES for s in layout.systems)
    ink = binarise(layout.deskewed) if many else np.zeros((0, 0), bool)
    cuts = []
    for i, s in enumerate(layout.systems):
        top, bottom, first = band_span(s, ink, layout.staff_space, layout.line_thickness)
        band = S.cut_system(page, top * f, bottom * f, s.left * f, s.right * f, C.SHEET_WINDOW_H)
        cuts.append(SystemCut(band, i, (s.top, s.bottom, s.left, s.right), f, first))
    return cuts
