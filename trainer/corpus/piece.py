"""Building ONE piece of the corpus: engrave its looks, perform it, align, write its files.

``plan_piece`` decides (seeded by the build seed and the piece id) which looks (music font, page
width, spacing) and which performances (soundfont, tempo factor, tempo curve, dynamics, pedal,
room, noise) a piece gets, from its split: train and pool pieces get "same" renders and
performances only; valid and test pieces also get "shifted" ones (Petaluma font; csound
soundfont, tempo outside the training range, reverb and noise). With ``BuildConfig.touch``
(``corpus build --touch``) train and pool performances also get a pianist's touch (chord asynchrony, a leading melody, articulation) and one of two grand-piano
programs of their soundfont (``TRAIN_TOUCH``), drawn from a generator of their own, so the valid
and test pieces' performances are byte for byte what they were before the touch existed.

``build_piece`` runs the plan and writes ``pages/<pid>/*.png`` and then ``pieces/<pid>.npz``
(atomically, last, so a piece is finished exactly when its .npz exists). It is run in a worker
subprocess by :mod:`trainer.corpus.build` because Verovio can crash the process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.audio.spectrogram import spectrogram
from scoreid.sheet.strip import cut_system, unroll
from synthesis.engrave import EngraveError, EngraveOptions, Engraving, engrave_looks
from synthesis.lilypond import LilyLook, engrave_lilypond
from synthesis.perform import PerformOptions, perform
from synthesis.synth import SHIFTED_SOUNDFONTS, TRAIN_SOUNDFONTS
from trainer.corpus.sources import SourceItem
from trainer.corpus.store import (
    atomic_write_bytes,
    audio_path,
    flac_bytes,
    npz_bytes,
    page_path,
    piece_path,
    png_bytes,
)

SAME_FONTS = ("Leipzig", "Bravura", "Gootville")
SHIFTED_FONTS = ("Petaluma",)
PAGE_WIDTHS = (1700, 1900, 2100, 2300, 2500)  #: Verovio units; varies the system breaks
TRAIN_TEMPO = (0.8, 1.25)
SHIFTED_TEMPO = ((0.6, 0.72), (1.35, 1.5))
#: touch of the train and pool performances (uniform ranges; ``synthesis.perform.PerformOptions``):
#: chord spread std (ms), melody lead (ms), articulation (std of the log duration factor), and the
#: General MIDI grand-piano programs drawn from (0 acoustic, 1 bright)
TRAIN_TOUCH = {"chord_spread_ms": (0.0, 20.0), "melody_lead_ms": (0.0, 25.0), "articulation": (0.0, 0.35)}
TRAIN_PROGRAMS = (0, 1)
#: LilyPond looks of train and pool pieces (``BuildConfig.lily_looks``): staff size (pt) and paper width (mm)
LILY_STAFF_SIZES = (16.0, 21.0)
LILY_PAPER_WIDTHS = (190.0, 210.0, 230.0, 250.0)


@dataclass
class BuildConfig:
    looks: int = 2  #: "same" renders per piece
    performances: int = 3  #: "same" performances per piece
    shifted_looks: int = 1  #: for valid/test pieces
    shifted_performances: int = 1
    seed: int = 0
    touch: bool = False  #: train/pool performances get a touch and a piano program (``TRAIN_TOUCH``)
    lily_looks: int = 0  #: train/pool pieces also get this many LilyPond renders (``LILY_STAFF_SIZES``)
    keep_audio: bool = False  #: also write each performance as FLAC (audio/<pid>/<perf>.flac)

    def to_dict(self, split: str | None = None) -> dict[str, Any]:
        """The options that decide a piece's content (keep_audio only adds files beside it); with
        ``split``, only those that decide a piece of that split (touch and LilyPond looks are for
        train and pool pieces only), so a valid/test piece is resumed across builds that differ in them."""
        d = asdict(self)
        d.pop("keep_audio")
        train_side = split is None or split in ("train", "pool")
        if not d["touch"] or not train_side:  # a corpus without touch is byte for byte what it was before
            d.pop("touch")
        if not d["lily_looks"] or not train_side:  # nor one without LilyPond looks
            d.pop("lily_looks")
        return d


@dataclass
class RenderPlan:
    name: str
    condition: str
    options: EngraveOptions | LilyLook  #: a Verovio look, or a LilyPond one


@dataclass
class PerfPlan:
    name: str
    condition: str
    options: PerformOptions


@dataclass
class PiecePlan:
    renders: list[RenderPlan] = field(default_factory=list)
    performances: list[PerfPlan] = field(default_factory=list)


def piece_seed(seed: int, pid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{pid}".encode()).digest()[:8], "little")


def plan_piece(pid: str, split: str, cfg: BuildConfig) -> PiecePlan:
    rng = np.random.default_rng(piece_seed(cfg.seed, pid))
    plan = PiecePlan()
    font0 = int(rng.integers(len(SAME_FONTS)))
    for i in range(cfg.looks):
        font = SAME_FONTS[(font0 + i) % len(SAME_FONTS)]
        opts = EngraveOptions(
            font=font,
            page_width=int(rng.choice(PAGE_WIDTHS)),
            spacing_linear=float(rng.uniform(0.2, 0.3)),
            spacing_non_linear=float(rng.uniform(0.5, 0.7)),
        )
        plan.renders.append(RenderPlan(f"same{i}-{font.lower()}", "same", opts))
    if cfg.lily_looks and split in ("train", "pool"):  # their own generator: every other draw as before
        lily_rng = np.random.default_rng(piece_seed(cfg.seed, f"{pid}:lilypond"))
        for i in range(cfg.lily_looks):
            look = LilyLook(
                staff_size=round(float(lily_rng.uniform(*LILY_STAFF_SIZES)), 1),
                paper_width_mm=float(lily_rng.choice(LILY_PAPER_WIDTHS)),
            )
            plan.renders.append(RenderPlan(f"same-lily{i}", "same", look))
    sf0 = int(rng.integers(len(TRAIN_SOUNDFONTS)))
    touch_rng = (
        np.random.default_rng(piece_seed(cfg.seed, f"{pid}:touch"))
        if cfg.touch and split in ("train", "pool")
        else None
    )
    for j in range(cfg.performances):
        sf = TRAIN_SOUNDFONTS[(sf0 + j) % len(TRAIN_SOUNDFONTS)]
        popts = PerformOptions(
            soundfont=sf,
            tempo_factor=round(float(rng.uniform(*TRAIN_TEMPO)), 3),
            tempo_curve=0.08,
            curve_period_s=float(rng.uniform(4, 10)),
            velocity_jitter=8.0,
            dynamics=12.0,
            pedal=bool(rng.random() < 0.5),
            seed=int(rng.integers(2**31)),
        )
        if touch_rng is not None:
            touch = {k: round(float(touch_rng.uniform(lo, hi)), 3) for k, (lo, hi) in TRAIN_TOUCH.items()}
            program = int(TRAIN_PROGRAMS[int(touch_rng.integers(len(TRAIN_PROGRAMS)))])
            popts = replace(popts, program=program, **touch)  # type: ignore[arg-type]
        plan.performances.append(PerfPlan(f"same{j}-{sf}", "same", popts))
    if split in ("valid", "test"):
        for i in range(cfg.shifted_looks):
            font = SHIFTED_FONTS[i % len(SHIFTED_FONTS)]
            eopts = EngraveOptions(font=font, page_width=int(rng.choice(PAGE_WIDTHS)))
            plan.renders.append(RenderPlan(f"shifted{i}-{font.lower()}", "shifted", eopts))
        for j in range(cfg.shifted_performances):
            sf = SHIFTED_SOUNDFONTS[j % len(SHIFTED_SOUNDFONTS)]
            lo, hi = SHIFTED_TEMPO[int(rng.integers(2))]
            popts = PerformOptions(
                soundfont=sf,
                tempo_factor=round(float(rng.uniform(lo, hi)), 3),
                tempo_curve=0.1,
                curve_period_s=float(rng.uniform(4, 10)),
                velocity_jitter=10.0,
                dynamics=15.0,
                pedal=bool(rng.random() < 0.5),
                reverb_rt60=round(float(rng.uniform(0.4, 1.2)), 3),
                snr_db=round(float(rng.uniform(15, 30)), 1),
                seed=int(rng.integers(2**31)),
            )
            plan.performances.append(PerfPlan(f"shifted{j}-{sf}", "shifted", popts))
    return plan


def fingerprint(eng: Engraving, n: int = 40) -> str:
    """A hash of the pitch sets of the first ``n`` onsets, in order (tempo-independent): equal for
    encodings of the same work."""
    by_onset: dict[int, set[int]] = {}
    for m in eng.midi_notes:
        key = int(round(m.onset_s * 1000))
        if key not in by_onset and len(by_onset) >= n:
            break
        by_onset.setdefault(key, set()).add(m.pitch)
    seq = [sorted(by_onset[k]) for k in sorted(by_onset)]
    return hashlib.sha1(json.dumps(seq).encode()).hexdigest()[:16]


def matched_by_place(base: Engraving, other: Engraving) -> dict[str, int]:
    """Another engraver's note heads -> indices of ``base``'s notes, by musical position and pitch
    (the engravers' ids differ); notes sharing both are paired in order."""
    by_place: dict[tuple[float, int], list[int]] = {}
    for k, note in enumerate(base.notes):
        by_place.setdefault((round(note.quarters, 4), note.pitch), []).append(k)
    out: dict[str, int] = {}
    for note in other.notes:
        same = by_place.get((round(note.quarters, 4), note.pitch))
        if same:
            out[note.id] = same.pop(0)
    return out


def strip_of(eng: Engraving) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(strip, system x offsets, system boxes [S, 5]) of an engraving, cut with the core's code."""
    bands = [cut_system(eng.pages[s.page], s.top, s.bottom, s.left, s.right) for s in eng.systems]
    strip, offsets = unroll(bands)
    boxes = np.array([[s.page, s.top, s.bottom, s.left, s.right] for s in eng.systems], np.float32)
    return strip, np.asarray(offsets, np.int32), boxes


def build_piece(
    item: SourceItem,
    split: str,
    cfg: BuildConfig,
    out: Path,
    exclude_fingerprints: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Build one piece; returns its index entry. Raises EngraveError (etc.) to skip it."""
    plan = plan_piece(item.pid, split, cfg)
    verovio = [rp.options for rp in plan.renders if isinstance(rp.options, EngraveOptions)]
    lily = [rp.options for rp in plan.renders if isinstance(rp.options, LilyLook)]
    engravings = engrave_looks(item.path, verovio, item.transpose)
    base = engravings[0]
    if lily and not item.transpose:
        try:  # LilyPond's looks are extra: a score it cannot set keeps its Verovio ones
            engravings += engrave_lilypond(item.path, lily)
        except EngraveError:
            pass
    # the renders in the engravings' order (Verovio's, then LilyPond's when it set the score)
    by_engraver = sorted(plan.renders, key=lambda rp: isinstance(rp.options, LilyLook))
    plan.renders = by_engraver[: len(engravings)]
    fp = fingerprint(base)
    if fp in exclude_fingerprints:
        raise EngraveError(f"{item.path}: same work as a piece of the excluded corpus (fingerprint {fp})")
    ids = [n.id for n in base.notes]
    index_of = {nid: k for k, nid in enumerate(ids)}
    n = len(ids)
    onset = np.array([x.onset_s for x in base.notes], np.float32)
    arrays: dict[str, np.ndarray] = {
        "note_onset_s": onset,
        "note_pitch": np.array([x.pitch for x in base.notes], np.int16),
    }
    renders_meta: list[dict[str, Any]] = []
    for i, (rp, eng) in enumerate(zip(plan.renders, engravings, strict=True)):
        strip, offsets, boxes = strip_of(eng)
        nx = np.full(n, np.nan, np.float32)
        ny = np.full(n, np.nan, np.float32)
        nsys = np.full(n, -1, np.int16)
        npage = np.full(n, -1, np.int16)
        pxy = np.full((n, 2), np.nan, np.float32)
        match = index_of if isinstance(rp.options, EngraveOptions) else matched_by_place(base, eng)
        for note in eng.notes:
            k = match.get(note.id)
            if k is None:
                continue
            s = eng.systems[note.system]
            x0 = int(round(s.left))
            y0 = int(round((s.top + s.bottom) / 2.0 - C.SHEET_WINDOW_H / 2.0))
            ny[k] = note.y - y0
            if 0 <= ny[k] < C.SHEET_WINDOW_H:  # a notehead outside the band is not in its window
                nx[k] = offsets[note.system] + (note.x - x0)
            nsys[k] = note.system
            npage[k] = note.page
            pxy[k] = (note.x, note.y)
        pages = []
        for pi, img in enumerate(eng.pages):
            pp = page_path(out, item.pid, rp.name, pi)
            atomic_write_bytes(pp, png_bytes(img))
            pages.append(str(pp.relative_to(out)))
        arrays.update(
            {
                f"r{i}.strip": strip,
                f"r{i}.note_x": nx,
                f"r{i}.note_y": ny,
                f"r{i}.note_system": nsys,
                f"r{i}.note_page": npage,
                f"r{i}.note_page_xy": pxy,
                f"r{i}.system_offsets": offsets,
                f"r{i}.system_boxes": boxes,
            }
        )
        renders_meta.append(
            {
                "name": rp.name,
                "font": rp.options.font if isinstance(rp.options, EngraveOptions) else "Emmentaler",
                **({"engraver": "lilypond"} if isinstance(rp.options, LilyLook) else {}),
                "condition": rp.condition,
                "options": asdict(rp.options),
                "pages": pages,
                "n_systems": len(eng.systems),
                "strip_width": int(strip.shape[1]),
                "aligned": int(np.isfinite(nx).sum()),
                "dropped": eng.dropped,
            }
        )
    perfs_meta: list[dict[str, Any]] = []
    for j, pp_ in enumerate(plan.performances):
        perf = perform(base.midi_notes, pp_.options)
        if cfg.keep_audio:
            atomic_write_bytes(audio_path(out, item.pid, pp_.name), flac_bytes(perf.audio))
        spec = spectrogram(perf.audio)
        frame = (perf.time_map.to_perf(onset.astype(np.float64)) * C.FPS).astype(np.float32)
        frame[~(frame < len(spec))] = np.nan
        arrays.update(
            {
                f"p{j}.spec": spec.astype(np.float16),
                f"p{j}.note_frame": frame,
                f"p{j}.time_map": perf.time_map.as_array(),
            }
        )
        perfs_meta.append(
            {
                "name": pp_.name,
                "soundfont": pp_.options.soundfont,
                "condition": pp_.condition,
                "tempo_factor": pp_.options.tempo_factor,
                "options": pp_.options.to_dict(),
                "seconds": round(perf.seconds, 3),
                "frames": int(len(spec)),
            }
        )
    x0_ok = np.isfinite(arrays["r0.note_x"])
    n_pairs = int(
        sum((x0_ok & np.isfinite(arrays[f"p{j}.note_frame"])).sum() for j in range(len(perfs_meta)))
    )
    meta = {
        "id": item.pid,
        "title": base.title,
        "composer": base.composer or item.composer,
        "source": str(item.path),
        "source_tag": item.source,
        "licence": item.licence,
        "split": split,
        "keys": item.keys,
        "fingerprint": fp,
        "n_notes": n,
        "note_ids": ids,
        "seconds": round(base.duration_s, 3),
        "n_pairs": n_pairs,
        "n_pages": sum(len(r["pages"]) for r in renders_meta),
        "perf_seconds": round(sum(p["seconds"] for p in perfs_meta), 3),
        "renders": renders_meta,
        "performances": perfs_meta,
        "build": cfg.to_dict(split),
    }
    if item.transpose:
        meta["transpose"] = item.transpose
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    atomic_write_bytes(piece_path(out, item.pid), npz_bytes(arrays))
    return index_entry(meta)


def index_entry(meta: dict[str, Any]) -> dict[str, Any]:
    """The piece's summary in index.json (everything but the per-note and per-render details)."""
    keep = (
        "title",
        "composer",
        "source",
        "source_tag",
        "licence",
        "split",
        "keys",
        "fingerprint",
        "n_notes",
        "seconds",
        "n_pairs",
        "n_pages",
        "perf_seconds",
    )
    entry = {k: meta[k] for k in keep}
    if meta.get("transpose"):
        entry["transpose"] = meta["transpose"]
    entry["renders"] = [r["name"] for r in meta["renders"]]
    entry["performances"] = [p["name"] for p in meta["performances"]]
    return entry
