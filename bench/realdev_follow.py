"""Benchmark: score following on real human performances (real-dev, ASAP) — issue 29.

    python -m bench.realdev_follow [--model models/default] [--data /work/data/realdev]
        [--realdev ../shared/real-dev] [--library DIR (default: bench.realdev's library for the model)]
        [--sizes 40] [--length 60] [--whole] [--per-composer N] [--limit N] [--seed 0] [--hop 0.5]
        [--plots 4] [--draw-truth N] [--work DIR] [--out bench/results/realdev-follow.json] [--dump FILE]

1. Truth (per performance, :func:`performance_truth`): performance time -> beat (the performer's
   ``<performer>_annotations.txt``; beat k of the performance is beat k of ``midi_score``, whose
   MIDI is the score *unfolded as played*) -> unfolded score position in quarter notes (each
   unfolded measure starts at a downbeat ``db`` of ``midi_score_annotations.txt``; the beats between
   are spread evenly) -> written measure + fraction of the engraved ``xml_score.musicxml`` (the work's
   page folder's score; its repeats and voltas — or those of the performance's own folder's score
   when it has the same measures — unfolded by :func:`unfold`, with repeats or, for the
   ``_no_repeat`` folders, without; the one whose downbeats match the annotations' count is used;
   when neither count matches, :func:`align_downbeats` aligns the annotated bars' beat counts with
   the measures, accepted with at most MAX_EDITS edits or 2 % of the downbeats (``downbeat_edits``
   per excerpt); else the performance is skipped with the reason) -> the engraving: the same MusicXML engraved
   again with the build's Verovio options (``trainer.realdev.build``: deterministic), every measure's
   page, system and x range and its noteheads' x at their onsets (SVG units) -> the library's
   detected systems, matched by page and vertical order (the system's staff extent mapped linearly
   onto the detected one: upscaling, rotation and deskew only move and scale it) -> the strip x
   (each system's strip x fitted to its windows' page x). Checked by the notes, independently of
   the beats (:func:`note_agreement`): the share of the performance MIDI's onsets in the excerpt
   whose pitch the written score has within a quarter measure of the true position (0.97-1.0 where
   the truth is right, about 0.3-0.5 with it moved by a measure); an excerpt below MIN_AGREEMENT
   is skipped with the reason. ``--draw-truth N`` draws the true measure
   boxes on the first pages of N works (``--work``/truth-*.png) to check the mapping by eye.
2. Following: every selected performance gives one ``--length`` s excerpt at a seeded random
   offset (:mod:`trainer.realdev.excerpts`; ``--whole``: the whole performance instead), streamed
   from its FLAC through :class:`scoreid.identify.stream.Identifier` in ``--hop`` s chunks against a
   library of ``--sizes`` pieces holding the true work (drawn as ``bench/realdev.py`` draws them).
   Per hop: the top-1 piece and the reported position of the TRUE piece (``update.positions``).
3. Metrics over the hops where the top-1 piece is right (and the true piece has a position): the
   time error |t - t'| where t' is the performance time nearest t at which the performer was at the
   reported written position (searched over the whole performance, so a repeat's other pass counts
   when it is nearer in time) — within 0.5 / 1 / 2 / 5 s; the lag (median signed t' - t, negative:
   behind); right system / right page; spurious backward jumps per minute (the reported position
   moves back by more than one written measure in a hop while the performer did not jump back in
   the last ``JUMP_GRACE_S``) next to the performance's own back-jumps per minute; end-to-end over
   every hop (top-1 right and within 2 s); page turns (``show_page``): late (after the music left
   the page), too early (before the music entered the page's last system), missed. By composer and
   by seconds heard (0-10, 10-30, 30-60 s).

Prints markdown tables, writes JSON (``--out``) and a PNG of true vs followed written position
against time for ``--plots`` excerpts of different composers (``--out`` with ``.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.follow import CachedEncoder, add_set_argument, follower_overrides
from bench.realdev import (
    DEFAULT_WORK,
    composer_of,
    excerpt_library,
    library_tag,
    parse_sizes,
    read_excerpt,
    select_performances,
)
from bench.report import cpu_name, write_result
from scoreid import contract as C
from scoreid.identify.follow import lag_of, library_null
from scoreid.identify.stream import DEFAULT_HOP_S, Identifier
from scoreid.inference import load_model
from scoreid.library.store import Library, system_layout
from scoreid.tensors import model_fingerprint
from synthesis.engrave import parse_midi
from trainer.realdev.build import DEFAULT_DATA
from trainer.realdev.excerpts import excerpt_start
from trainer.realdev.works import DEFAULT_REALDEV, work_id

ROOT = Path(__file__).resolve().parents[1]

GRID_S = 0.05  #: the truth is tabulated every this many seconds of the performance
BACK_JUMP_MEASURES = 1.0  #: a backward move by more than this many written measures is a jump
JUMP_GRACE_S = 3.0  #: a reported jump back within this long after the performer's own is not spurious
TOLERANCES_S = (0.5, 1.0, 2.0, 5.0)
HEARD_BINS = ((0.0, 10.0), (10.0, 30.0), (30.0, 60.0), (60.0, float("inf")))
EDIT_COST = 2.0  #: beats: the cost of an edit of the downbeat alignment
MIN_AGREEMENT = 0.8  #: an excerpt whose notes agree less with where the truth puts them is skipped
MAX_EDITS = 4  #: an alignment may need at most this many edits (or 2 % of the downbeats)
TARGETS = {"within_1s": 0.90, "right_system": 0.97, "spurious_back_per_min": 0.2, "abs_lag_s": 0.3}


# ------------------------------------------------------------------------------ the written score
@dataclass
class Measure:
    """One written measure of a MusicXML part (its first part)."""

    number: str
    length_q: float  #: its actual length in quarter notes (the longest voice)
    nominal_q: float  #: the time signature's length in quarter notes
    time_sig: str = ""
    forward: bool = False  #: a forward repeat barline at its start
    backward: int = 0  #: times played when a backward repeat ends it (0: none)
    ending: tuple[int, ...] = ()  #: the volta numbers it belongs to (empty: no volta)
    ending_start: bool = False
    implicit: bool = False  #: ``implicit="yes"``: not counted (an upbeat, a split bar)


def parse_measures(xml: str | bytes) -> list[Measure]:
    """The measures of the first part of a MusicXML document (``score-partwise``)."""
    root = ET.fromstring(xml)
    part = root.find("part")
    if part is None:
        raise ValueError("MusicXML without a <part>")
    out: list[Measure] = []
    divisions = 1.0
    beats, beat_type = 4, 4
    ending: tuple[int, ...] = ()
    for m in part.findall("measure"):
        att = m.find("attributes")
        if att is not None:
            d = att.find("divisions")
            if d is not None and d.text:
                divisions = float(d.text)
            ts = att.find("time")
            if ts is not None and ts.find("beats") is not None:
                try:
                    beats = int(re.split(r"[+]", ts.findtext("beats") or "4")[0])
                    beat_type = int(ts.findtext("beat-type") or "4")
                except ValueError:
                    pass
        cursor = longest = 0.0
        for el in m:
            if el.tag in ("note", "forward", "backup"):
                dur = el.findtext("duration")
                q = float(dur) / divisions if dur else 0.0
                if el.tag == "backup":
                    cursor -= q
                elif el.tag == "forward" or el.find("chord") is None:
                    cursor += q
                longest = max(longest, cursor)
        meas = Measure(
            m.get("number", str(len(out) + 1)), longest, beats * 4.0 / beat_type, f"{beats}/{beat_type}"
        )
        meas.implicit = m.get("implicit") == "yes"
        if meas.length_q <= 0:
            meas.length_q = meas.nominal_q
        stop_after = False
        for bl in m.findall("barline"):
            rep = bl.find("repeat")
            if rep is not None and rep.get("direction") == "forward":
                meas.forward = True
            if rep is not None and rep.get("direction") == "backward":
                meas.backward = int(rep.get("times") or 2)
            end = bl.find("ending")
            if end is not None:
                nums = tuple(int(n) for n in re.findall(r"\d+", end.get("number") or ""))
                if end.get("type") == "start":
                    ending, meas.ending_start = nums, True
                elif end.get("type") in ("stop", "discontinue"):
                    meas.ending = meas.ending or ending or nums
                    stop_after = True
        meas.ending = meas.ending or ending
        if stop_after:
            ending = ()
        out.append(meas)
    return out


def unfold(measures: list[Measure], repeats: bool = True) -> list[int]:
    """The written measures (indices) in the order they are played: repeat barlines (``times``)
    and voltas; ``repeats=False``: straight through, taking only the last volta of each group."""
    n = len(measures)
    if not repeats:
        last_of_group: set[int] = set()  # measures of the last volta of each group of voltas
        i = 0
        while i < n:
            if measures[i].ending:
                group: list[list[int]] = []
                while i < n and measures[i].ending:
                    if measures[i].ending_start or not group:
                        group.append([])
                    group[-1].append(i)
                    i += 1
                last_of_group.update(group[-1])
            else:
                i += 1
        return [i for i in range(n) if not measures[i].ending or i in last_of_group]
    out: list[int] = []
    start, passes = 0, 1  # where the current repeat starts, which pass of it this is
    done: dict[int, int] = {}  # backward repeat -> times jumped back from it
    i = 0
    guard = 0
    while i < n and guard < 50 * n:
        guard += 1
        m = measures[i]
        if m.forward and (passes == 1 and done.get(-1 - i, 0) == 0):
            start = i
            done[-1 - i] = 1  # entered once: a later pass through it keeps the pass count
        if m.ending and passes not in m.ending:
            i += 1
            continue
        out.append(i)
        if m.backward and done.get(i, 0) < m.backward - 1:
            done[i] = done.get(i, 0) + 1
            passes += 1
            i = start
            continue
        if m.backward or (
            m.ending
            and passes in m.ending
            and passes == max(m.ending)
            and i + 1 < n
            and not measures[i + 1].ending
            and not m.backward
        ):
            start, passes = i + 1, 1
            for k in list(done):
                if k < 0:
                    del done[k]
        i += 1
    return out


def downbeat_flags(order: list[int], measures: list[Measure]) -> list[bool]:
    """Which unfolded measures start at a downbeat: all but a partial first measure (an upbeat) and
    a partial measure that completes the partial one played before it (a bar split by a repeat)."""
    flags = []
    carry = 0.0  # the length of the partial measure just played (0: none)
    for k, i in enumerate(order):
        m = measures[i]
        partial = m.length_q < m.nominal_q - 1e-6
        if k == 0 and (partial or m.implicit):
            flags.append(False)
            carry = 0.0
            continue
        if partial and carry > 0 and abs(carry + m.length_q - m.nominal_q) < 1e-6:
            flags.append(False)
            carry = 0.0
            continue
        flags.append(True)
        carry = m.length_q if partial else 0.0
    return flags


STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def score_notes(xml: str | bytes) -> list[tuple[int, float, int]]:
    """Every struck note of every part: (written measure index, onset in quarters from the
    measure's start, MIDI pitch); tie continuations are no onsets."""
    root = ET.fromstring(xml)
    out: list[tuple[int, float, int]] = []
    for part in root.findall("part"):
        divisions = 1.0
        for k, m in enumerate(part.findall("measure")):
            d = m.find("attributes/divisions")
            if d is not None and d.text:
                divisions = float(d.text)
            cursor = last = 0.0
            for el in m:
                if el.tag in ("backup", "forward"):
                    q = float(el.findtext("duration") or 0) / divisions
                    cursor += q if el.tag == "forward" else -q
                    continue
                if el.tag != "note":
                    continue
                q = float(el.findtext("duration") or 0) / divisions
                onset = last if el.find("chord") is not None else cursor
                if el.find("chord") is None:
                    last = cursor
                    onset = cursor
                    cursor += q
                pitch = el.find("pitch")
                tied = any(t.get("type") == "stop" for t in el.findall("tie")) and not any(
                    t.get("type") == "start" for t in el.findall("tie")
                )
                if pitch is None or tied:
                    continue
                step = STEPS.get(pitch.findtext("step") or "C", 0)
                alter = round(float(pitch.findtext("alter") or 0))
                octave = int(pitch.findtext("octave") or 4)
                out.append((k, onset, 12 * (octave + 1) + step + alter))
    return out


def note_agreement(
    perf_notes: list[tuple[float, int]],
    truth: Truth,
    measures: list[Measure],
    notes: list[tuple[int, float, int]],
    t0: float,
    t1: float,
    shift: float = 0.0,
) -> float:
    """The share of the performance's note onsets in [t0, t1] whose pitch the written score has
    within a quarter of a measure of where the truth puts them (``shift``: the truth moved by this
    many measures, a control): a check of the truth that does not use the beat annotations."""
    by_measure: dict[int, list[tuple[float, int]]] = {}
    for k, q, p in notes:
        by_measure.setdefault(k, []).append((q / max(measures[k].length_q, 1e-9), p))
    hits = total = 0
    for t, pitch in perf_notes:
        if not t0 <= t <= t1:
            continue
        g = int(truth.at(np.array([t]))[0])
        w = truth.wpos[g] + shift
        if not np.isfinite(w) or abs(truth.t[g] - t) > GRID_S or w < 0 or w >= len(measures):
            continue
        total += 1
        k = int(w)
        for kk in (k - 1, k, k + 1):
            for f, p in by_measure.get(kk, []):
                if p == pitch and abs(kk + f - w) <= 0.25:
                    hits += 1
                    break
            else:
                continue
            break
    return hits / total if total else float("nan")


# ------------------------------------------------------------------------------ beats -> position
def read_beats(path: Path) -> tuple[np.ndarray, list[str]]:
    """Times and labels of an ASAP annotation file (time, time, label per line)."""
    ts, labels = [], []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            ts.append(float(parts[0]))
            labels.append(parts[2].strip())
    return np.asarray(ts, np.float64), labels


@dataclass
class Unfolded:
    """The score unfolded as played: written measure of each unfolded measure and its start (q)."""

    order: list[int]
    start_q: np.ndarray  #: len(order) + 1 (the end last)
    repeats: bool

    def written(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unfolded quarter position -> (unfolded index, written position = measure + fraction)."""
        u = np.clip(np.searchsorted(self.start_q, q, side="right") - 1, 0, len(self.order) - 1)
        length = self.start_q[u + 1] - self.start_q[u]
        frac = np.clip((q - self.start_q[u]) / np.maximum(length, 1e-9), 0.0, 1.0)
        return u, np.asarray(self.order)[u] + frac


def beat_unit_q(m: Measure) -> float:
    """The annotated beat of a measure's time signature in quarters (compound metres: dotted)."""
    try:
        num, den = (int(v) for v in m.time_sig.split("/"))
    except ValueError:
        return 1.0
    return 4.0 / den * (3 if den >= 8 and num % 3 == 0 and num > 3 else 1)


def align_downbeats(
    bar_beats: list[int], starts: np.ndarray, units: np.ndarray, band: int = 24
) -> tuple[np.ndarray, int] | None:
    """Where each annotated bar's downbeat is in the unfolded score when the counts differ: a
    dynamic-programming alignment of the annotated bars (``bar_beats`` beats each; the last one's
    is not counted) with the unfolded measures that start at a downbeat (``starts``: their starts
    and the end, quarters; ``units``: their beats, quarters). Moves: a bar is a measure; a bar spans
    two measures (a downbeat not annotated); two bars share a measure (a downbeat annotated inside
    it); a measure is left out (not annotated). Each move but the first costs EDIT_COST beats, a
    bar costs its beat-count difference. Returns the downbeats' quarter positions and the number
    of edits, None when no alignment stays within the band."""
    nj, nk = len(bar_beats), len(starts) - 1
    e = np.diff(starts) / units
    inf = float("inf")
    cost = np.full((nj + 1, nk + 1), inf)
    back: dict[tuple[int, int], tuple[int, int, str]] = {}
    cost[0, 0] = 0.0

    def b(j: int) -> float:
        return float(bar_beats[j])

    def diff(j: int, beats: float) -> float:
        return 0.0 if j == nj - 1 else abs(b(j) - beats)

    for j in range(nj + 1):
        for k in range(max(0, j - band), min(nk, j + band) + 1):
            c = cost[j, k]
            if not np.isfinite(c):
                continue
            moves = []
            if j < nj and k < nk:
                moves.append((j + 1, k + 1, "A", diff(j, e[k])))
            if j < nj and k + 1 < nk:
                moves.append((j + 1, k + 2, "B", diff(j, e[k] + e[k + 1]) + EDIT_COST))
            if j + 1 < nj and k < nk:
                moves.append(
                    (j + 2, k + 1, "C", diff(j + 1, e[k] - b(j)) + abs(min(0.0, e[k] - b(j))) + EDIT_COST)
                )
            if k < nk:
                moves.append((j, k + 1, "D", e[k] + EDIT_COST))
            for jj, kk, mv, dc in moves:
                if c + dc < cost[jj, kk]:
                    cost[jj, kk] = c + dc
                    back[(jj, kk)] = (j, k, mv)
    if not np.isfinite(cost[nj, nk]):
        return None
    db_q = np.full(nj, np.nan)
    edits = 0
    j, k = nj, nk
    while (j, k) != (0, 0):
        pj, pk, mv = back[(j, k)]
        if mv != "A":
            edits += 1
        if mv in "AB":
            db_q[pj] = starts[pk]
        elif mv == "C":
            db_q[pj] = starts[pk]
            db_q[pj + 1] = starts[pk] + b(pj) * units[pk]
        j, k = pj, pk
    return db_q, edits


def beat_positions(
    labels: list[str], unf: Unfolded, measures: list[Measure]
) -> tuple[np.ndarray, int] | None:
    """The unfolded quarter position of every annotated beat, and the edits the downbeats needed
    (0: one unfolded measure per annotated downbeat; else :func:`align_downbeats`'s; None: no
    alignment within MAX_EDITS)."""
    flags = np.asarray(downbeat_flags(unf.order, measures), bool)
    db_q = unf.start_q[:-1][flags]
    is_db = np.array([lab.startswith("db") for lab in labels])
    idx = np.flatnonzero(is_db)
    if not len(idx) or not len(db_q):
        return None
    edits = 0
    if len(idx) == len(db_q) - 1 and not is_db[0] and flags[0]:
        db_q = db_q[1:]  # the annotations start after the first downbeat (a rest on it)
    if len(idx) != len(db_q):
        units = np.array([beat_unit_q(measures[i]) for i in np.asarray(unf.order)[flags]])
        starts = np.concatenate([unf.start_q[:-1][flags], [unf.start_q[-1]]])
        got = align_downbeats(np.diff(np.append(idx, len(labels))).tolist(), starts, units)
        if got is None or got[1] > max(MAX_EDITS, 0.02 * len(idx)):
            return None
        db_q, edits = got
    beat_q = np.full(len(labels), np.nan)
    beat_q[idx] = db_q
    for a, b in zip(idx[:-1], idx[1:], strict=True):  # beats between downbeats: evenly spread
        beat_q[a:b] = np.linspace(beat_q[a], beat_q[b], b - a + 1)[:-1]
    first_len = unf.start_q[1] - unf.start_q[0] if len(unf.order) > 1 else 4.0
    step0 = (beat_q[idx[1]] - beat_q[idx[0]]) / max(idx[1] - idx[0], 1) if len(idx) > 1 else first_len
    for k in range(idx[0] - 1, -1, -1):  # an upbeat
        beat_q[k] = beat_q[k + 1] - step0
    step1 = (beat_q[idx[-1]] - beat_q[idx[-2]]) / max(idx[-1] - idx[-2], 1) if len(idx) > 1 else first_len
    for k in range(idx[-1] + 1, len(labels)):
        beat_q[k] = min(beat_q[k - 1] + step1, unf.start_q[-1])
    return beat_q, edits


def match_unfolding(measures: list[Measure], labels: list[str]) -> tuple[Unfolded, np.ndarray, int] | str:
    """The unfolding (with repeats, else without) whose downbeats match the annotations (one
    measure each; else the one that needs the fewest edits), the beats' quarter positions and the
    edits; a reason string when neither matches."""
    tried = []
    best: tuple[Unfolded, np.ndarray, int] | None = None
    for repeats in (True, False):
        order = unfold(measures, repeats)
        lengths = np.array([measures[i].length_q for i in order])
        unf = Unfolded(order, np.concatenate([[0.0], np.cumsum(lengths)]), repeats)
        got = beat_positions(labels, unf, measures)
        if got is not None and (best is None or got[1] < best[2]):
            best = (unf, got[0], got[1])
        tried.append(f"{sum(downbeat_flags(order, measures))} ({'repeats' if repeats else 'no repeats'})")
    if best is not None:
        return best
    n_db = sum(1 for lab in labels if lab.startswith("db"))
    return f"annotations have {n_db} downbeats, the unfolded score " + " / ".join(tried)


# ------------------------------------------------------------------------------ the engraving
@dataclass
class MeasureBox:
    page: int
    system: int  #: on its page
    x0: float
    x1: float
    anchor_frac: list[float] = field(default_factory=list)  #: onsets in the measure (fraction) ...
    anchor_x: list[float] = field(default_factory=list)  #: ... and their noteheads' x (SVG units)


@dataclass
class Layout:
    """The engraving's measures and systems (SVG units of each page)."""

    measures: list[MeasureBox]
    systems: list[list[tuple[float, float, float, float]]]  #: per page: (top, bottom, left, right)


def engrave_layout(score: Path, lengths_q: list[float]) -> Layout:
    """Re-engrave ``score`` with the real-dev build's Verovio options; every measure's page, system,
    staff x range and its noteheads' x at their onsets (fractions of the measure, ``lengths_q``)."""
    import verovio

    from synthesis.engrave import SVG_NS, EngraveOptions, _classes, _path_points
    from trainer.realdev.build import FONT

    if hasattr(verovio, "enableLog"):
        verovio.enableLog(verovio.LOG_OFF)
    tk = verovio.toolkit()
    tk.setOptions(EngraveOptions(font=FONT).verovio())
    if not tk.loadData(score.read_text(encoding="utf-8")):
        raise ValueError(f"{score}: Verovio could not load it")
    tmap = tk.renderToTimemap({"includeMeasures": True})
    m_q: dict[str, float] = {}
    n_q: dict[str, float] = {}
    for ev in tmap:
        if "measureOn" in ev:
            m_q.setdefault(ev["measureOn"], float(ev["qstamp"]))
        for nid in ev.get("on", []):
            n_q.setdefault(nid, float(ev["qstamp"]))
    boxes: list[MeasureBox] = []
    systems: list[list[tuple[float, float, float, float]]] = []
    for p in range(1, tk.getPageCount() + 1):
        root = ET.fromstring(tk.renderToSVG(p))
        page_sys: list[tuple[float, float, float, float]] = []
        for sysg in root.iter(SVG_NS + "g"):
            if "system" not in _classes(sysg):
                continue
            ys: list[float] = []
            xs: list[float] = []
            for mg in sysg.iter(SVG_NS + "g"):
                if "measure" not in _classes(mg):
                    continue
                mx: list[float] = []
                for staff in mg.iter(SVG_NS + "g"):
                    if "staff" not in _classes(staff):
                        continue
                    for path in staff.findall(SVG_NS + "path"):
                        pts = _path_points(path.get("d") or "")
                        if len(pts) == 2 and abs(pts[0][1] - pts[1][1]) < 1e-6:
                            mx += [pts[0][0], pts[1][0]]
                            ys.append(pts[0][1])
                if not mx:
                    continue
                xs += mx
                q0 = m_q.get(mg.get("id") or "")
                k = len(boxes)
                length = lengths_q[k] if k < len(lengths_q) else 4.0
                fr: dict[float, list[float]] = {}
                for ng in mg.iter(SVG_NS + "g"):
                    nid = ng.get("id") or ""
                    if "note" not in _classes(ng) or nid not in n_q or q0 is None:
                        continue
                    rect = next(
                        (
                            b.find(SVG_NS + "rect")
                            for b in ng.findall(SVG_NS + "g")
                            if b.get("id") == f"bbox-{nid}"
                        ),
                        None,
                    )
                    if rect is None:
                        continue
                    f = round((n_q[nid] - q0) / max(length, 1e-9), 4)
                    if 0.0 <= f < 1.0:
                        fr.setdefault(f, []).append(float(rect.get("x", 0)) + float(rect.get("width", 0)) / 2)
                fs = sorted(fr)
                boxes.append(
                    MeasureBox(
                        p - 1, len(page_sys), min(mx), max(mx), fs, [float(np.median(fr[f])) for f in fs]
                    )
                )
            if ys:
                page_sys.append((min(ys), max(ys), min(xs), max(xs)))
        systems.append(page_sys)
    return Layout(boxes, systems)


def measure_anchors(box: MeasureBox) -> tuple[list[float], list[float]]:
    """(fraction, x) anchors of a measure from 0 to 1: its onsets' noteheads, a start 15 % into the
    measure (or at the first notehead, if earlier) when the first onset is not at 0, and its end."""
    fs = list(box.anchor_frac)
    xs = list(box.anchor_x)
    if not fs or fs[0] > 1e-6:
        start = box.x0 + 0.15 * (box.x1 - box.x0)
        fs, xs = [0.0, *fs], [start if not xs else min(start, xs[0]), *xs]
    return [*fs, 1.0], [*xs, box.x1]


def measure_x(box: MeasureBox, frac: float) -> float:
    """The x (SVG units) of a fraction of a measure: between its onsets' noteheads, its staff range."""
    fs, xs = measure_anchors(box)
    return float(np.interp(frac, fs, np.maximum.accumulate(xs)))


def measure_frac(box: MeasureBox, x: float) -> float:
    """The inverse of :func:`measure_x`."""
    fs, xs = measure_anchors(box)
    xa = np.maximum.accumulate(np.asarray(xs)) + np.arange(len(xs)) * 1e-6
    return float(np.interp(x, xa, fs))


# ------------------------------------------------------------------------------ the library
@dataclass
class PieceMap:
    """The engraving's systems matched to the library's detected ones (one piece)."""

    layout: Layout
    #: per global system: page, system on it, left, right (library page px)
    lib_systems: list[tuple[int, int, float, float]]
    strip_a: np.ndarray  #: strip x = a + b * library page x, per global system
    strip_b: np.ndarray
    offsets: np.ndarray
    glob: dict[tuple[int, int], int]  #: (page, system) -> global system index
    measures_of: list[list[int]]  #: measures on each global system

    def strip_x(self, w: int, frac: float) -> float:
        box = self.layout.measures[w]
        g = self.glob[(box.page, box.system)]
        top, bot, left, right = self.layout.systems[box.page][box.system]
        _p, _s, ll, lr = self.lib_systems[g]
        x_lib = ll + (measure_x(box, frac) - left) * (lr - ll) / max(right - left, 1e-9)
        return float(self.strip_a[g] + self.strip_b[g] * x_lib)

    def written_at(self, strip_x: float) -> float:
        """A strip x -> written position (measure index + fraction)."""
        g = int(np.clip(np.searchsorted(self.offsets, strip_x, side="right") - 1, 0, len(self.offsets) - 1))
        ms = self.measures_of[g]
        if not ms:
            return float("nan")
        page, s, ll, lr = self.lib_systems[g]
        top, bot, left, right = self.layout.systems[page][s]
        x_lib = (strip_x - self.strip_a[g]) / self.strip_b[g]
        x = left + (x_lib - ll) * (right - left) / max(lr - ll, 1e-9)
        for w in ms:
            if x < self.layout.measures[w].x1 or w == ms[-1]:
                return w + measure_frac(self.layout.measures[w], x)
        return float("nan")


def map_to_library(lib: Library, pid: str, layout: Layout) -> PieceMap | str:
    """Match the engraving's systems to the library's by page and vertical order (a reason string
    when the counts differ)."""
    entry = lib.pieces[pid]
    pages = entry.get("pages") or []
    if len(pages) != len(layout.systems):
        return f"library has {len(pages)} pages, the engraving {len(layout.systems)}"
    for k, (pg, ls) in enumerate(zip(pages, layout.systems, strict=True)):
        if len(pg.get("systems", [])) != len(ls):
            return f"page {k + 1}: library found {len(pg.get('systems', []))} systems, the engraving has {len(ls)}"
    lay = system_layout(entry)
    glob = {ps: g for g, ps in enumerate(lay)}
    s, e = lib.rows[pid]
    mx, msx = lib.meta["x"][s:e].astype(np.float64), lib.meta["strip_x"][s:e].astype(np.float64)
    mp, ms = lib.meta["page"][s:e], lib.meta["system"][s:e]
    offsets = np.asarray(entry.get("system_offsets") or [0], np.float64)
    a, b = np.zeros(len(lay)), np.full(len(lay), np.nan)
    lib_sys = []
    for g, (p, si) in enumerate(lay):
        top, bot, left, right = pages[p]["systems"][si]
        lib_sys.append((p, si, float(left), float(right)))
        rows = np.flatnonzero((mp == p) & (ms == si))
        if len(rows) >= 2 and np.ptp(mx[rows]) > 0:
            b[g], a[g] = np.polyfit(mx[rows], msx[rows], 1)
    b_med = float(np.nanmedian(b)) if np.isfinite(b).any() else 0.5
    for g in np.flatnonzero(~np.isfinite(b)).tolist():
        b[g] = b_med
        a[g] = offsets[g] - b_med * lib_sys[g][2]
    measures_of: list[list[int]] = [[] for _ in lay]
    for w, box in enumerate(layout.measures):
        measures_of[glob[(box.page, box.system)]].append(w)
    return PieceMap(layout, lib_sys, a, b, offsets, glob, measures_of)


# ------------------------------------------------------------------------------ the truth of a performance
@dataclass
class Truth:
    """The true written position of one performance, every GRID_S seconds (NaN: outside the beats)."""

    t: np.ndarray
    wpos: np.ndarray  #: written measure index + fraction
    strip: np.ndarray
    page: np.ndarray
    system: np.ndarray  #: on its page
    repeats: bool
    edits: int = 0  #: edits the downbeat alignment needed (0: one measure per annotated downbeat)

    def at(self, t: np.ndarray) -> np.ndarray:
        """Index of the grid point of each time (clipped)."""
        return grid_points(self.t, t)

    def back_jumps(self) -> int:
        d = np.diff(self.wpos)
        return int(np.sum(d < -BACK_JUMP_MEASURES))


def grid_points(t_grid: np.ndarray, t: Any) -> np.ndarray:
    """Index of the point of a GRID_S-spaced time grid nearest each time ``t`` (clipped)."""
    return np.clip(np.round((np.asarray(t) - t_grid[0]) / GRID_S).astype(int), 0, len(t_grid) - 1)


def time_error(wpos_true: np.ndarray, t_grid: np.ndarray, t: float, w_rep: float) -> float:
    """t' - t: t' the time nearest ``t`` at which the true written position was ``w_rep`` (a
    crossing of a continuous stretch of the truth, or else the grid point nearest in position)."""
    ok = np.isfinite(wpos_true)
    if not ok.any() or not np.isfinite(w_rep):
        return float("nan")
    a, b = wpos_true[:-1], wpos_true[1:]
    cont = np.isfinite(a) & np.isfinite(b) & (np.abs(b - a) < BACK_JUMP_MEASURES)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    hit = np.flatnonzero(cont & (lo <= w_rep) & (w_rep <= hi))
    if len(hit):
        da = b[hit] - a[hit]
        f = np.where(np.abs(da) > 1e-12, (w_rep - a[hit]) / np.where(da == 0, 1, da), 0.0)
        tt = t_grid[hit] + f * (t_grid[hit + 1] - t_grid[hit])
        return float(tt[np.argmin(np.abs(tt - t))] - t)
    d = np.where(ok, np.abs(wpos_true - w_rep), np.inf)
    best = np.flatnonzero(d <= d.min() + 1e-9)
    return float(t_grid[best[np.argmin(np.abs(t_grid[best] - t))]] - t)


def spurious_back_jumps(t: np.ndarray, rep: np.ndarray, true_t: np.ndarray, true_w: np.ndarray) -> int:
    """Hops where the reported written position moves back by more than BACK_JUMP_MEASURES while
    the performer did not jump back within JUMP_GRACE_S before (the truth on its own grid)."""
    n = 0
    for i in range(1, len(t)):
        if not (np.isfinite(rep[i]) and np.isfinite(rep[i - 1])) or rep[i] >= rep[i - 1] - BACK_JUMP_MEASURES:
            continue
        sel = (true_t >= t[i] - JUMP_GRACE_S - (t[i] - t[i - 1])) & (true_t <= t[i])
        w = true_w[sel]
        w = w[np.isfinite(w)]
        if len(w) >= 2 and np.any(np.diff(w) < -0.5):
            continue
        n += 1
    return n


def performance_truth(
    perf: dict[str, Any], realdev: Path, measures: list[Measure], pmap: PieceMap, duration_s: float
) -> Truth | str:
    folder = realdev / perf["folder"]
    score_t, score_lab = read_beats(folder / "midi_score_annotations.txt")
    if not perf.get("annotations"):
        return "no performance annotations"
    perf_t, _perf_lab = read_beats(realdev / perf["annotations"])
    if len(perf_t) != len(score_t):
        return f"performance has {len(perf_t)} beats, the score {len(score_t)}"
    own = folder / "xml_score.musicxml"  # a folder of the same work (``_repeat``, ``_no_repeat``)
    if own.is_file():  # its own repeats, where its measures are the engraved score's
        own_measures = parse_measures(own.read_bytes())
        if len(own_measures) == len(measures):
            measures = own_measures
    got = match_unfolding(measures, score_lab)
    if isinstance(got, str):
        return got
    unf, beat_q, edits = got
    if np.any(np.diff(perf_t) <= 0):
        keep = np.concatenate([[True], np.diff(perf_t) > 0])
        perf_t, beat_q = perf_t[keep], beat_q[keep]
    tg = np.arange(0.0, duration_s + GRID_S / 2, GRID_S)
    inside = (tg >= perf_t[0]) & (tg <= perf_t[-1])
    q = np.interp(tg, perf_t, beat_q)
    _u, wpos = unf.written(q)
    wpos = np.where(inside, wpos, np.nan)
    strip = np.full(len(tg), np.nan)
    page = np.full(len(tg), np.nan)
    system = np.full(len(tg), np.nan)
    for k in np.flatnonzero(inside):
        w = min(int(wpos[k]), len(pmap.layout.measures) - 1)
        box = pmap.layout.measures[w]
        strip[k] = pmap.strip_x(w, wpos[k] - w)
        page[k], system[k] = box.page, box.system
    return Truth(tg, wpos, strip, page, system, unf.repeats, edits)


# ------------------------------------------------------------------------------ streaming
def follow_excerpt(
    lib: Library,
    enc: Any,
    audio: np.ndarray,
    pid: str,
    start_s: float,
    truth: Truth,
    pmap: PieceMap,
    hop_s: float,
    follower: str = "tempo",
    record: list[tuple[float, np.ndarray, float | None]] | None = None,
) -> dict[str, np.ndarray]:
    """Stream ``audio`` (the engine's ``follower`` kind); per hop: heard s, top-1 right, true /
    reported written position, time error, true / reported page and system, the page shown, true /
    reported strip x. ``record``: appended, per voting hop, (heard s, the audio window's cosine
    similarities to the true piece's windows, its library null) — what ``bench.follow_replay``
    replays a follower on."""
    ident = Identifier(lib, enc, hop_s=hop_s, follower=follower)
    if record is not None:
        engine, vote = ident.engine, ident.engine.vote

        def recording_vote(t: float, emb: np.ndarray, hits: Any) -> Any:
            sims = engine._sims(pid, np.asarray(emb, np.float32)[None])[0]
            record.append((float(t), sims, library_null([float(sim) for _p, sim in hits])))
            return vote(t, emb, hits)

        engine.vote = recording_vote  # type: ignore[method-assign,assignment]
    chunk = max(1, int(round(hop_s * C.SAMPLE_RATE)))
    rows = []
    ups = []
    for s in range(0, len(audio), chunk):
        ups += ident.push(audio[s : s + chunk])
    ups += ident.finish()
    for u in ups:
        t = start_s + u.t
        g = int(truth.at(np.array([t]))[0])
        wt = truth.wpos[g] if abs(truth.t[g] - t) <= GRID_S else np.nan
        right = bool(u.ranking) and u.ranking[0][0] == pid
        pos = u.positions.get(pid)
        if pos is None:
            rows.append(
                (
                    u.t,
                    right,
                    wt,
                    np.nan,
                    np.nan,
                    truth.page[g],
                    truth.system[g],
                    np.nan,
                    np.nan,
                    np.nan,
                    truth.strip[g],
                    np.nan,
                )
            )
            continue
        wr = pmap.written_at(float(pos.strip_x))
        err = time_error(truth.wpos, truth.t, t, wr) if np.isfinite(wt) else np.nan
        rows.append(
            (
                u.t,
                right,
                wt,
                wr,
                err,
                truth.page[g],
                truth.system[g],
                float(pos.page),
                float(pos.system),
                float(pos.show_page),
                truth.strip[g],
                float(pos.strip_x),
            )
        )
    a = np.array(rows, np.float64).reshape(-1, 12)
    keys = (
        "heard",
        "right",
        "w_true",
        "w_rep",
        "err",
        "page_true",
        "sys_true",
        "page_rep",
        "sys_rep",
        "show_page",
        "strip_true",
        "strip_rep",
    )
    out = {k: a[:, i] for i, k in enumerate(keys)}
    out["right"] = out["right"].astype(bool)
    return out


TABLE_STEP_PX = 2.0  #: the strip x -> written position / page / system table of a dumped track


def dump_track(
    out: Path,
    lib: Library,
    pid: str,
    pmap: PieceMap,
    truth: Truth,
    perf: dict[str, Any],
    start_s: float,
    hop_s: float,
    record: list[tuple[float, np.ndarray, float | None]],
    hops: dict[str, np.ndarray],
) -> None:
    """One excerpt for ``bench.follow_replay``: the true piece's windows, the recorded hops, the
    truth (performance time -> written position, page, system) and the table strip x -> written
    position / page / system (every TABLE_STEP_PX), and the engine's own hops (top-1 right)."""
    s, e = lib.rows[pid]
    sx = lib.meta["strip_x"][s:e].astype(np.float64)
    xs = np.arange(float(sx[0]), float(sx[-1]) + TABLE_STEP_PX, TABLE_STEP_PX)
    at = [lib.at_strip_x(pid, float(x)) for x in xs]
    name = f"{work_id(perf['folder'])}--{perf['performer']}--{start_s:.1f}"
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / f"{name}.npz",
        composer=composer_of(perf["folder"]),
        work=pid,
        performer=perf["performer"],
        start_s=start_s,
        hop_s=hop_s,
        stride=lib.stride,
        lag_s=lag_of(lib.contract.audio_window_frames, lib.contract.audio_lead_frames),
        strip_x=sx,
        t=np.array([r[0] for r in record], np.float64),
        sims=np.stack([r[1] for r in record]).astype(np.float32)
        if record
        else np.zeros((0, len(sx)), np.float32),
        null=np.array([np.nan if r[2] is None else r[2] for r in record], np.float64),
        grid_t=truth.t,
        grid_w=truth.wpos,
        grid_strip=truth.strip,
        grid_page=truth.page,
        grid_sys=truth.system,
        table_x=xs,
        table_w=np.array([pmap.written_at(float(x)) for x in xs], np.float64),
        table_page=np.array([a["page"] for a in at], np.int32),
        table_sys=np.array([a["system"] for a in at], np.int32),
        engine_heard=hops["heard"],
        engine_right=hops["right"],
        engine_err=hops["err"],
    )


def page_turns(r: dict[str, np.ndarray], pmap: PieceMap) -> list[dict[str, float]]:
    """Each time the true position moves on to the next page: when the music entered the page's
    last system (t_last), left the page (t_leave) and when the page shown turned (t_turn; NaN:
    not within 10 s); only where the top-1 piece is right."""
    out = []
    pt, st, t, show = r["page_true"], r["sys_true"], r["heard"], r["show_page"]
    for i in range(1, len(t)):
        if not (np.isfinite(pt[i]) and np.isfinite(pt[i - 1]) and pt[i] == pt[i - 1] + 1):
            continue
        page = int(pt[i - 1])
        last = len(pmap.layout.systems[page]) - 1
        j = i - 1
        while j > 0 and pt[j - 1] == page and st[j - 1] == last:
            j -= 1
        t_last = float(t[j]) if st[i - 1] == last else float(t[i - 1])
        window = np.flatnonzero((t >= t_last - 10.0) & (t <= t[i] + 10.0) & r["right"])
        turned = [k for k in window if np.isfinite(show[k]) and show[k] >= page + 1]
        out.append(
            {
                "t_leave": float(t[i]),
                "t_last": t_last,
                "t_turn": float(t[turned[0]]) if turned else float("nan"),
            }
        )
    return out


# ------------------------------------------------------------------------------ metrics
def within_shares(e: np.ndarray) -> dict[str, float]:
    """``within_<tol>s``: the share of time errors ``e`` within each of TOLERANCES_S (NaN: none)."""
    return {
        f"within_{tol:g}s".replace(".", "_"): float(np.mean(np.abs(e) <= tol)) if len(e) else float("nan")
        for tol in TOLERANCES_S
    }


def accuracy(
    err: list[np.ndarray], sys_ok: list[np.ndarray], page_ok: list[np.ndarray], spurious: int, minutes: float
) -> dict[str, Any]:
    """The accuracy columns over the hops of some excerpts: ``err`` their time errors, ``sys_ok`` /
    ``page_ok`` whether the reported system / page was right (per excerpt), ``spurious`` back jumps
    over ``minutes`` followed: hops, within each tolerance, right system / page, median |error|, lag
    (median signed error), spurious back jumps per minute."""
    e = np.concatenate(err) if err else np.zeros(0)
    so = np.concatenate(sys_ok) if sys_ok else np.zeros(0, bool)
    po = np.concatenate(page_ok) if page_ok else np.zeros(0, bool)
    nan = float("nan")
    out: dict[str, Any] = {"hops": int(len(e))} | within_shares(e)
    out.update(
        {
            "right_system": float(np.mean(so)) if len(so) else nan,
            "right_page": float(np.mean(po)) if len(po) else nan,
            "median_abs_error_s": float(np.median(np.abs(e))) if len(e) else nan,
            "lag_s": float(np.median(e)) if len(e) else nan,
            "spurious_back_per_min": spurious / minutes if minutes else nan,
        }
    )
    return out


def metrics(
    rs: list[dict[str, Any]], hop_s: float, lo: float = 0.0, hi: float = float("inf")
) -> dict[str, Any]:
    """The table's numbers over excerpts ``rs`` (hops heard in [lo, hi) s)."""
    err, sys_ok, page_ok, e2e, minutes, spur, own_min, own = [], [], [], [], 0.0, 0, 0.0, 0
    turns: list[dict[str, float]] = []
    for r in rs:
        h = r["hops"]
        sel = (h["heard"] >= lo) & (h["heard"] < hi) & np.isfinite(h["w_true"])
        ok = sel & h["right"] & np.isfinite(h["err"])
        err.append(h["err"][ok])
        sys_ok.append(((h["page_rep"] == h["page_true"]) & (h["sys_rep"] == h["sys_true"]))[ok])
        page_ok.append((h["page_rep"] == h["page_true"])[ok])
        e2e.append((h["right"] & (np.abs(np.nan_to_num(h["err"], nan=np.inf)) <= 2.0))[sel])
        minutes += ok.sum() * hop_s / 60.0
        idx = np.flatnonzero(ok)
        if len(idx) > 1:
            spur += spurious_back_jumps(h["heard"][idx], h["w_rep"][idx], r["grid_heard"], r["grid_w"])
        gw = r["grid_w"][(r["grid_heard"] >= lo) & (r["grid_heard"] < hi)]
        gw = gw[np.isfinite(gw)]
        own += int(np.sum(np.diff(gw) < -BACK_JUMP_MEASURES)) if len(gw) > 1 else 0
        own_min += len(gw) * GRID_S / 60.0
        if lo == 0.0 and hi == float("inf"):
            turns += r["turns"]
    ee = np.concatenate(e2e) if e2e else np.zeros(0, bool)
    nan = float("nan")
    out: dict[str, Any] = {"excerpts": len(rs), "all_hops": int(len(ee))}
    out.update(accuracy(err, sys_ok, page_ok, spur, minutes))
    out.update(
        {
            "performer_back_per_min": own / own_min if own_min else nan,
            "end_to_end": float(np.mean(ee)) if len(ee) else nan,
            "top1": float(np.mean([np.mean(r["hops"]["right"]) for r in rs])) if rs else nan,
            "minutes_followed": round(minutes, 2),
        }
    )
    if lo == 0.0 and hi == float("inf"):
        lead = np.array([tr["t_leave"] - tr["t_turn"] for tr in turns], np.float64)
        done = np.isfinite(lead)
        out.update(
            {
                "page_turns": len(turns),
                "turns_late": int(np.sum(done & (lead < 0))),
                "turns_too_early": int(
                    np.sum(done & np.array([tr["t_turn"] < tr["t_last"] for tr in turns], bool))
                ),
                "turns_missed": int(np.sum(~done)),
                "turn_lead_median_s": float(np.median(lead[done])) if done.any() else nan,
            }
        )
    return out


def pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.1f} %"


def num(x: float, fmt: str = ".2f") -> str:
    return "-" if not np.isfinite(x) else format(x, fmt)


def print_rows(rows: list[tuple[str, dict[str, Any]]], first: str) -> None:
    print(
        f"| {first} | excerpts | hops (top-1 right) | within 0.5 s | within 1 s | within 2 s | within 5 s "
        "| right system | right page | median abs err s | lag s | spurious back jumps/min "
        "| performer's back jumps/min | end-to-end | top-1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in rows:
        print(
            f"| {name} | {m['excerpts']} | {m['hops']} | {pct(m['within_0_5s'])} | {pct(m['within_1s'])} "
            f"| {pct(m['within_2s'])} | {pct(m['within_5s'])} | {pct(m['right_system'])} | {pct(m['right_page'])} "
            f"| {num(m['median_abs_error_s'])} | {num(m['lag_s'], '+.2f')} | {num(m['spurious_back_per_min'])} "
            f"| {num(m['performer_back_per_min'])} | {pct(m['end_to_end'])} | {pct(m['top1'])} |"
        )


# ------------------------------------------------------------------------------ drawing
def draw_truth(page_png: Path, pmap: PieceMap, lib: Library, pid: str, page: int, out: Path) -> None:
    """The true measure boxes (from the engraving, mapped to the library's systems) on a page of
    the library (its deskewed coordinates: the page PNG is rotated back by the library's angle)."""
    from PIL import Image, ImageDraw

    entry = lib.pieces[pid]["pages"][page]
    img = Image.open(page_png).convert("RGB")
    img = img.rotate(
        -float(entry.get("angle_deg", 0.0)), resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)
    )
    h, w = entry.get("size", [img.height, img.width])
    if (img.width, img.height) != (w, h):
        img = img.resize((int(w), int(h)))
    d = ImageDraw.Draw(img)
    for k, box in enumerate(pmap.layout.measures):
        if box.page != page:
            continue
        top, bot, left, right = pmap.layout.systems[page][box.system]
        g = pmap.glob[(page, box.system)]
        _p, si, ll, lr = pmap.lib_systems[g]
        ltop, lbot = entry["systems"][si][0], entry["systems"][si][1]
        x0 = ll + (box.x0 - left) * (lr - ll) / (right - left)
        x1 = ll + (box.x1 - left) * (lr - ll) / (right - left)
        d.rectangle([x0, ltop - 4, x1, lbot + 4], outline=(220, 0, 0), width=2)
        d.text((x0 + 3, ltop - 18), str(k + 1), fill=(0, 0, 200))
        for f in box.anchor_frac[:1]:
            xa = ll + (measure_x(box, f) - left) * (lr - ll) / (right - left)
            d.line([xa, ltop, xa, lbot], fill=(0, 160, 0), width=1)
    img.save(out)


def plot(drawn: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not drawn:
        return
    fig, axes = plt.subplots(len(drawn), 1, figsize=(10, 2.8 * len(drawn)), squeeze=False)
    for ax, d in zip(axes[:, 0], drawn, strict=True):
        h = d["hops"]
        t = d["start_s"] + h["heard"]
        ax.plot(d["grid_t"], d["grid_w"] + 1, "k-", lw=2.5, alpha=0.3, label="true (performer)")
        rep = np.where(h["right"], h["w_rep"] + 1, np.nan)
        ax.plot(t, rep, ".", ms=4, color="tab:red", label="followed (top-1 right)")
        other = np.where(~h["right"], h["w_rep"] + 1, np.nan)
        ax.plot(t, other, ".", ms=3, color="tab:grey", alpha=0.6, label="followed (top-1 wrong)")
        lo = np.nanmin(np.concatenate([d["grid_w"], h["w_rep"]])) + 1
        hi = np.nanmax(np.concatenate([d["grid_w"], h["w_rep"]])) + 1
        ax.set_ylim(lo - 1, hi + 1)
        ax.set_xlim(t[0] - 1, t[-1] + 1)
        ax.set_title(
            f"{d['work']} / {d['performer']}: within 1 s {pct(d['within_1s'])}, "
            f"right system {pct(d['right_system'])}",
            fontsize=9,
        )
        ax.set_ylabel("written measure")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", markerscale=2)
    axes[-1, 0].set_xlabel("performance time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------ main
class DiskCachedEncoder(CachedEncoder):
    """:class:`CachedEncoder` whose memo (keyed by the window's SHA-1) is kept in ``folder`` (one
    ``.npz`` per excerpt ``key``; None: in memory only), so a rerun with another follower skips
    the model."""

    def __init__(self, enc: Any, folder: Path | None, key: str):
        super().__init__(enc)
        import hashlib

        self._sha1 = hashlib.sha1
        self.file = None if folder is None else folder / (self._sha1(key.encode()).hexdigest() + ".npz")
        self.disk: dict[str, np.ndarray] = {}
        if self.file is not None and self.file.is_file():
            with np.load(self.file) as z:
                self.disk = {k: z[k] for k in z.files}
        self.loaded = len(self.disk)

    def embed_audio(self, x: np.ndarray) -> np.ndarray:
        key = self._sha1(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()
        if key not in self.disk:
            self.disk[key] = self.enc.embed_audio(x)
        return self.disk[key]

    def save(self) -> None:
        if self.file is not None and len(self.disk) > self.loaded:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp.npz")
            np.savez(tmp, allow_pickle=True, **self.disk)
            os.replace(tmp, self.file)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--realdev", type=Path, default=DEFAULT_REALDEV)
    p.add_argument(
        "--library",
        type=Path,
        default=None,
        help="a built library (default: python -m bench.realdev's for --model in its default --work)",
    )
    p.add_argument("--sizes", default="40", help="library sizes, e.g. 40,200,all")
    p.add_argument("--length", type=float, default=60.0, help="excerpt seconds")
    p.add_argument("--whole", action="store_true", help="stream whole performances instead of excerpts")
    p.add_argument("--per-composer", type=int, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plots", type=int, default=4)
    p.add_argument(
        "--draw-truth", type=int, default=0, help="draw the true measure boxes on pages of N works"
    )
    p.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "scoreid-bench-realdev-follow"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realdev-follow.json")
    p.add_argument("--dump", type=Path, default=None, help="write every hop (compact JSON) here")
    p.add_argument(
        "--dump-tracks",
        type=Path,
        default=None,
        help="write per excerpt (first size) the true piece's similarities per hop and the truth, "
        "for python -m bench.follow_replay",
    )
    p.add_argument("--follower", default="guard", help="the follower kind (scoreid.identify.follow.KINDS)")
    add_set_argument(p)
    p.add_argument(
        "--embed-cache",
        type=Path,
        default=None,
        help="keep the audio windows' embeddings here between runs (per excerpt; a rerun skips the model)",
    )
    return p.parse_args(argv)


def piece_map(lib: Library, work: str, score: Path, cache: Path) -> tuple[list[Measure], PieceMap] | str:
    """The written measures and the engraving matched to the library (the layout cached as JSON)."""
    xml = score.read_bytes()
    measures = parse_measures(xml)
    f = cache / f"{work}.layout.json"
    if f.is_file():
        doc = json.loads(f.read_text())
        layout = Layout(
            [MeasureBox(**b) for b in doc["measures"]], [[tuple(s) for s in pg] for pg in doc["systems"]]
        )  # type: ignore[misc]
    else:
        from trainer.realdev.isolated import IsolatedError, run_isolated

        try:
            layout = run_isolated(engrave_layout, score, [m.length_q for m in measures], timeout=600)
        except IsolatedError as e:
            return f"engraving failed ({e})"
        cache.mkdir(parents=True, exist_ok=True)
        f.write_text(
            json.dumps({"measures": [b.__dict__ for b in layout.measures], "systems": layout.systems})
        )
    if len(layout.measures) != len(measures):
        return f"the engraving has {len(layout.measures)} measures, the MusicXML {len(measures)}"
    got = map_to_library(lib, work, layout)
    return got if isinstance(got, str) else (measures, got)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = follower_overrides(args.set)
    t_start = time.perf_counter()
    set_doc = json.loads((args.data / "set.json").read_text())
    fingerprint = model_fingerprint(args.model)
    if args.library is None:
        args.library = DEFAULT_WORK / library_tag("shifted", fingerprint)
    lib = Library.open(args.library)
    built_with = (lib.index.get("model") or {}).get("sha256")
    if built_with and built_with != fingerprint:
        raise SystemExit(
            f"bench/realdev_follow: {args.library} was built with another model than {args.model}"
        )
    sizes = parse_sizes(args.sizes, len(lib.piece_ids))
    perfs = select_performances(set_doc["performances"], args.limit, args.per_composer)
    perfs = [p for p in perfs if p["work"] in lib.rows]
    enc = load_model(args.model, threads=args.threads)
    maps: dict[str, Any] = {}
    notes: dict[str, list[tuple[int, float, int]]] = {}
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    drawn_truth = 0
    for n, p in enumerate(perfs):
        work, name = p["work"], f"{p['folder']}/{p['performer']}"
        if work not in maps:
            score = args.realdev / set_doc["pieces"][work]["folder"] / "xml_score.musicxml"
            maps[work] = piece_map(lib, work, score, args.work / "layouts")
            if not isinstance(maps[work], str) and drawn_truth < args.draw_truth:
                pm = maps[work][1]
                for pg in range(min(2, len(pm.layout.systems))):
                    png = args.data / "pieces" / work / f"p{pg + 1}.png"
                    draw_truth(png, pm, lib, work, pg, args.work / f"truth-{work}-p{pg + 1}.png")
                drawn_truth += 1
        if isinstance(maps[work], str):
            skipped.append({"performance": name, "reason": maps[work]})
            log(f"{n + 1}/{len(perfs)} {name}: skipped ({maps[work]})")
            continue
        measures, pmap = maps[work]
        if work not in notes:
            notes[work] = score_notes(
                (args.realdev / set_doc["pieces"][work]["folder"] / "xml_score.musicxml").read_bytes()
            )
        truth = performance_truth(p, args.realdev, measures, pmap, float(p["seconds"]))
        if isinstance(truth, str):
            skipped.append({"performance": name, "reason": truth})
            log(f"{n + 1}/{len(perfs)} {name}: skipped ({truth})")
            continue
        if args.whole:
            start, length = 0.0, float(p["seconds"])
        else:
            start_or_none = excerpt_start(
                args.seed, work_id(p["folder"]), p["performer"], args.length, p["seconds"]
            )
            if start_or_none is None:
                skipped.append({"performance": name, "reason": f"shorter than {args.length:g} s"})
                continue
            start, length = start_or_none, args.length
        perf_notes = [(x.onset_s, x.pitch) for x in parse_midi((args.realdev / p["midi"]).read_bytes())]
        agree = note_agreement(perf_notes, truth, measures, notes[work], start, start + length)
        if not agree >= MIN_AGREEMENT:
            reason = f"truth doubtful: {agree:.0%} of the excerpt's notes are in the score where it puts them"
            skipped.append({"performance": name, "reason": reason})
            log(f"{n + 1}/{len(perfs)} {name}: skipped ({reason})")
            continue
        audio = read_excerpt(args.data / p["audio"], start, length)
        key = f"{work_id(p['folder'])}/{p['performer']}/{length:g}"
        memo = DiskCachedEncoder(enc, args.embed_cache, f"{key}/{start:.3f}/{built_with}")
        in_ex = (truth.t >= start) & (truth.t <= start + length)
        said = []
        for size in sizes:
            sub = excerpt_library(lib, work, size, key, args.seed, True)
            record: list[tuple[float, np.ndarray, float | None]] | None = None
            if args.dump_tracks is not None and size == sizes[0]:
                record = []
            hops = follow_excerpt(sub, memo, audio, work, start, truth, pmap, args.hop, args.follower, record)
            if record is not None:
                dump_track(args.dump_tracks, lib, work, pmap, truth, p, start, args.hop, record, hops)
            r = {
                "work": work,
                "folder": p["folder"],
                "performer": p["performer"],
                "composer": composer_of(p["folder"]),
                "size": len(sub.piece_ids),
                "start_s": start,
                "length_s": length,
                "repeats_played": truth.repeats,
                "downbeat_edits": truth.edits,
                "note_agreement": round(agree, 3),
                "hops": hops,
                "grid_t": truth.t[in_ex],
                "grid_heard": truth.t[in_ex] - start,
                "grid_w": truth.wpos[in_ex],
                "turns": page_turns(hops, pmap),
            }
            m = metrics([r], args.hop)
            r["metrics"] = m
            results.append(r)
            said.append(
                f"@{len(sub.piece_ids)}: top-1 {pct(m['top1'])}, within 1 s {pct(m['within_1s'])}, "
                f"system {pct(m['right_system'])}, lag {num(m['lag_s'], '+.2f')}"
            )
        memo.save()
        el = time.perf_counter() - t_start
        log(f"{n + 1}/{len(perfs)} {name} @ {start:.1f} s: {'; '.join(said)} ({el:.0f} s)")

    # ---------------------------------------------------------------- tables
    mode = "whole performances" if args.whole else f"{args.length:g} s excerpts"
    print(
        f"score following on real performances (real-dev): {mode}, "
        f"{len({r['folder'] + r['performer'] for r in results})} performances of "
        f"{len({r['work'] for r in results})} works, {len(skipped)} skipped; hop {args.hop} s, seed {args.seed}; "
        "metrics over the hops where the top-1 piece is right (end-to-end: over every hop)\n"
    )
    table = {str(n): metrics([r for r in results if r["size"] == n], args.hop) for n in sizes}
    print_rows([(f"library {n}", m) for n, m in table.items()], "library")
    first = sizes[0]
    comps = sorted({r["composer"] for r in results})
    by_comp = {
        c: metrics([r for r in results if r["size"] == first and r["composer"] == c], args.hop) for c in comps
    }
    print(f"\nby composer (library {first}):\n")
    print_rows(list(by_comp.items()), "composer")
    bins = [(lo, hi) for lo, hi in HEARD_BINS if lo < max((r["length_s"] for r in results), default=0)]
    by_heard = {
        f"{lo:g}-{hi:g} s": metrics([r for r in results if r["size"] == first], args.hop, lo, hi)
        for lo, hi in bins
    }
    print(f"\nby seconds heard (library {first}):\n")
    print_rows(list(by_heard.items()), "heard")
    m0 = table[str(first)]
    print(
        f"\npage turns (library {first}): {m0.get('page_turns', 0)}, late {m0.get('turns_late', 0)}, "
        f"too early {m0.get('turns_too_early', 0)}, missed {m0.get('turns_missed', 0)}, "
        f"median lead {num(m0.get('turn_lead_median_s', float('nan')), '.1f')} s"
    )
    if skipped:
        print("\nskipped:")
        for s in skipped:
            print(f"- {s['performance']}: {s['reason']}")
    print(f"\nwall {time.perf_counter() - t_start:.0f} s; {cpu_name()}")

    # ---------------------------------------------------------------- plot and JSON
    # the PNG: composers spread over the list (the four with the most excerpts when --plots 4), of
    # each the excerpt whose share within 1 s is its composer's median (a typical one)
    counts = {c: sum(1 for r in results if r["size"] == first and r["composer"] == c) for c in comps}
    pick = sorted(sorted(comps, key=lambda c: -counts[c])[: args.plots])
    drawn = []
    for c in pick:
        rs = sorted(
            (r for r in results if r["size"] == first and r["composer"] == c and r["metrics"]["hops"] > 20),
            key=lambda r: (r["metrics"]["within_1s"], r["folder"], r["performer"]),
        )
        if rs:
            r = rs[len(rs) // 2]
            drawn.append(
                {**r, "within_1s": r["metrics"]["within_1s"], "right_system": r["metrics"]["right_system"]}
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(drawn, args.out.with_suffix(".png"))

    def rnd(x: np.ndarray, k: int = 3) -> list[Any]:
        return [None if not np.isfinite(v) else round(float(v), k) for v in x]

    result = {
        "name": "score following on real performances (real-dev, ASAP)",
        "mode": mode,
        "sizes": sizes,
        "hop_s": args.hop,
        "seed": args.seed,
        "per_composer": args.per_composer,
        "limit": args.limit,
        "table": table,
        "by_composer": by_comp,
        "by_seconds_heard": by_heard,
        "targets": TARGETS,
        "skipped": skipped,
        "library": str(args.library),
        "model": str(args.model),
        "follower": args.follower,
        "follower_overrides": overrides,
        "constants": {
            "grid_s": GRID_S,
            "back_jump_measures": BACK_JUMP_MEASURES,
            "jump_grace_s": JUMP_GRACE_S,
        },
        "wall_s": round(time.perf_counter() - t_start, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_name(),
        "excerpts": [
            {k: v for k, v in r.items() if k not in ("hops", "grid_t", "grid_heard", "grid_w")}
            for r in results
        ],
    }
    write_result(args.out, result)
    if args.dump:  # every hop: heard s, top-1 right, true / reported written measure, time error
        args.dump.parent.mkdir(parents=True, exist_ok=True)
        args.dump.write_text(
            json.dumps(
                [
                    {
                        "work": r["work"],
                        "performer": r["performer"],
                        "size": r["size"],
                        "start_s": r["start_s"],
                    }
                    | {
                        k: rnd(v) if k != "right" else [bool(b) for b in v]
                        for k, v in r["hops"].items()
                        if k in ("heard", "right", "w_true", "w_rep", "err")
                    }
                    for r in results
                ]
            )
        )
        print(f"wrote {args.dump}")
    return 0


def log(msg: str) -> None:
    print(f"realdev-follow: {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
