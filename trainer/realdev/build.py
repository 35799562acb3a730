"""Building the real-performance validation set: scanned-looking pages and synthesised real performances.

    python -m trainer.realdev.build [--realdev ../shared/real-dev] [--out /work/data/realdev]
        [--seed 0] [--matches trainer/realdev/corpus_matches.json] [--engraver verovio|lilypond]
        [--audio-from SET_DIR] [--no-progress]

Layout written under ``--out``::

    pieces/<work-id>/p1.png p2.png …  piece.json   page images only ({"title", "composer"}; no notes)
    audio/<folder-id>/<performer>.flac              22 050 Hz mono, 16-bit FLAC
    audio/<folder-id>/<performer>.json              sidecar: work, folder, performer, seconds, beats, …
    set.json                                        the works and performances, and how they were made

Sheets: each work's ``xml_score.musicxml`` is engraved with Verovio (``synthesis.engrave``) in the
**Leland** font (training uses Leipzig / Bravura / Gootville, the ``shifted`` test Petaluma),
upscaled 2x (a 150-200 dpi scan rather than the contract's render scale), and degraded like a scan
(the recipe of ``docs/make_example_sheets.py``): a small rotation (±1.5°), a blur, grey paper and
grain. A library is then built from these pixels as from a user's pages. ``--engraver lilypond``
engraves them with LilyPond instead (``synthesis.lilypond``, staff size ``LILY_STAFF_SIZE``, the same
scan degradation): the same works in a second engraver's hand, to measure what a library from
another engraver costs (the model trains on Verovio's only).

Audio: each real performance (``<performer>.mid``: a pianist's timing, dynamics and pedal) is
synthesised with FluidSynth and the **csound** GM soundfont (``synthesis.synth``; not a training
soundfont), then a synthetic room (RT60 drawn in ``RT60_RANGE``) and white noise (SNR drawn in
``SNR_DB_RANGE``) are added (``synthesis.perform.add_room_and_noise``). Never the MuseScore engraver
or the MuseScore General soundfont (reserved for the separate evaluation).

Folders that hold the same work (ASAP's ``32-1`` and ``32-1_no_repeat``; found by their notes,
``same_work_as`` in the matches file) get one page folder, the first folder of the group without
``_no_repeat``; performances of every folder of the group name that work.

Deterministic: every item draws from its own RNG seeded by ``--seed`` and its name, so the same
inputs give the same files whatever the order or the subset built. Resumable: a page folder is
finished when its ``piece.json`` exists, a performance when its sidecar exists; both are written
last, after the files they describe. Engraving runs in a forked subprocess (Verovio can crash).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageFilter

from scoreid import contract as C
from trainer.corpus.store import atomic_write_bytes, flac_bytes, png_bytes, write_json
from trainer.realdev.isolated import IsolatedError, run_isolated
from trainer.realdev.matches import DEFAULT_OUT as DEFAULT_MATCHES
from trainer.realdev.matches import load_matches
from trainer.realdev.works import DEFAULT_REALDEV, PerformanceFile, Work, find_works, item_rng, work_id

FONT = "Leland"
ENGRAVERS = ("verovio", "lilypond")
#: the LilyPond look of ``--engraver lilypond`` pages (staff size between LilyPond's 20 and a denser 18)
LILY_STAFF_SIZE = 18.0
SOUNDFONT = "csound"
UPSCALE = 2
ROTATION_DEG = 1.5  #: rotation drawn in ±this
BLUR_RADIUS = 0.8
PAPER_GAIN, PAPER_OFFSET = 0.92, 12.0  #: grey paper: ink never black, paper never white
GRAIN_STD = 6.0
RT60_RANGE = (0.4, 1.0)  #: seconds
SNR_DB_RANGE = (20.0, 30.0)
DEFAULT_DATA = Path("/work/data/realdev")
ENGRAVE_TIMEOUT_S = 900

T = TypeVar("T")


# ------------------------------------------------------------------------------ which works
def canonical_folders(works: list[Work], matches: dict[str, Any]) -> dict[str, str]:
    """folder -> the folder whose pages stand for its work (groups from ``same_work_as``)."""
    known = {w.folder for w in works}
    out = {}
    for w in works:
        entry = matches.get("works", {}).get(w.folder, {})
        group = sorted(
            {w.folder} | {s["folder"] for s in entry.get("same_work_as", []) if s["folder"] in known}
        )
        out[w.folder] = min(group, key=lambda f: ("_no_repeat" in f, f))
    return out


# ------------------------------------------------------------------------------ sheets
def scanned(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clean grey page -> a page that looks scanned (upscaled, rotated, blurred, grey, grainy)."""
    img = Image.fromarray(page)
    img = img.resize((img.width * UPSCALE, img.height * UPSCALE), Image.Resampling.BICUBIC)
    angle = float(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    img = img.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    x = np.asarray(img, np.float32) * PAPER_GAIN + PAPER_OFFSET + rng.normal(0.0, GRAIN_STD, img.size[::-1])
    return np.clip(x, 0, 255).astype(np.uint8)


def engrave_pages(score: Path, engraver: str = "verovio") -> list[np.ndarray]:
    """The pages of a score engraved in ``FONT`` (clean grey images at the contract scale), or with
    LilyPond (``engraver="lilypond"``: its own font, staff size :data:`LILY_STAFF_SIZE`)."""
    if engraver == "lilypond":
        from synthesis.lilypond import LilyLook, engrave_lilypond

        return engrave_lilypond(score, [LilyLook(staff_size=LILY_STAFF_SIZE)])[0].pages
    from synthesis.engrave import EngraveOptions, engrave

    return engrave(score, EngraveOptions(font=FONT)).pages


def build_sheets(work: Work, folder: Path, seed: int, engraver: str = "verovio") -> int:
    """Engrave, degrade and write one work's pages and ``piece.json``; returns the page count."""
    pages = run_isolated(engrave_pages, work.score, engraver, timeout=ENGRAVE_TIMEOUT_S)
    rng = item_rng(seed, f"pages:{work.id}")
    for old in folder.glob("p*.png"):
        old.unlink()
    for i, page in enumerate(pages):
        atomic_write_bytes(folder / f"p{i + 1}.png", png_bytes(scanned(page, rng)))
    write_json(folder / "piece.json", {"title": work.title, "composer": work.composer})
    return len(pages)


# ------------------------------------------------------------------------------ audio
@dataclass(frozen=True)
class Room:
    rt60: float
    snr_db: float


def draw_room(rng: np.random.Generator) -> Room:
    return Room(round(float(rng.uniform(*RT60_RANGE)), 3), round(float(rng.uniform(*SNR_DB_RANGE)), 1))


def synthesise(midi: bytes, room: Room, rng: np.random.Generator) -> np.ndarray:
    """A performance MIDI -> csound-soundfont audio in a room with noise (contract rate, mono)."""
    from synthesis.perform import PerformOptions, add_room_and_noise
    from synthesis.synth import render_midi

    dry = render_midi(midi, SOUNDFONT, sample_rate=C.SAMPLE_RATE)
    return add_room_and_noise(dry, PerformOptions(reverb_rt60=room.rt60, snr_db=room.snr_db), rng)


def build_performance(
    work: Work, perf: PerformanceFile, canonical: str, out: Path, realdev: Path, seed: int
) -> dict[str, Any]:
    """Synthesise one performance into ``out`` (FLAC + sidecar); returns the sidecar."""
    folder = out / "audio" / work.id
    rng = item_rng(seed, f"audio:{work.id}:{perf.performer}")
    room = draw_room(rng)
    audio = synthesise(perf.midi.read_bytes(), room, rng)
    flac = folder / f"{perf.performer}.flac"
    atomic_write_bytes(flac, flac_bytes(audio))
    sidecar = {
        "work": work_id(canonical),
        "folder": work.folder,
        "performer": perf.performer,
        "audio": flac.relative_to(out).as_posix(),
        "seconds": round(len(audio) / C.SAMPLE_RATE, 3),
        "sample_rate": C.SAMPLE_RATE,
        "annotations": perf.annotations.relative_to(realdev).as_posix() if perf.annotations else None,
        "midi": perf.midi.relative_to(realdev).as_posix(),
        "soundfont": SOUNDFONT,
        "reverb_rt60": room.rt60,
        "snr_db": room.snr_db,
        "seed": seed,
    }
    write_json(folder / f"{perf.performer}.json", sidecar)
    return sidecar


# ------------------------------------------------------------------------------ the whole set
def progress(items: list[T], desc: str, enabled: bool) -> Iterator[tuple[int, T]]:
    """Enumerate ``items``; a tqdm bar on a terminal (when ``enabled``), else nothing extra."""
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        yield from enumerate(tqdm(items, desc=desc, unit="item", dynamic_ncols=True))
    else:
        yield from enumerate(items)


def log_line(enabled: bool, msg: str) -> None:
    """One line per item when stderr is not a terminal (a tqdm bar shows progress otherwise)."""
    if not (enabled and sys.stderr.isatty()):
        print(f"realdev: {msg}", file=sys.stderr, flush=True)


def build_all_sheets(
    works: list[Work], canon: dict[str, str], out: Path, seed: int, show: bool, engraver: str = "verovio"
) -> dict[str, dict[str, Any]]:
    targets = [w for w in works if canon[w.folder] == w.folder]
    built: dict[str, dict[str, Any]] = {}
    for i, w in progress(targets, "sheets", show):
        folder = out / "pieces" / w.id
        t0 = time.time()
        if (folder / "piece.json").is_file():
            status = "done before"
        else:
            try:
                build_sheets(w, folder, seed, engraver)
                status = f"engraved in {time.time() - t0:.0f} s"
            except IsolatedError as e:
                log_line(True, f"sheets {i + 1}/{len(targets)} {w.id}: FAILED ({e})")
                continue
        n_pages = len(list(folder.glob("p*.png")))
        built[w.id] = {"folder": w.folder, "pages": n_pages, "title": w.title, "composer": w.composer}
        log_line(show, f"sheets {i + 1}/{len(targets)} {w.id}: {n_pages} pages, {status}")
    return built


def build_all_audio(
    works: list[Work], canon: dict[str, str], out: Path, realdev: Path, seed: int, show: bool
) -> list[dict[str, Any]]:
    todo = [(w, p) for w in works for p in w.performances]
    done: list[dict[str, Any]] = []
    for i, (w, perf) in progress(todo, "audio", show):
        sidecar = out / "audio" / w.id / f"{perf.performer}.json"
        t0 = time.time()
        if sidecar.is_file():
            entry, status = json.loads(sidecar.read_text()), "done before"
        else:
            entry = build_performance(w, perf, canon[w.folder], out, realdev, seed)
            status = f"rendered in {time.time() - t0:.1f} s"
        done.append(entry)
        log_line(
            show, f"audio {i + 1}/{len(todo)} {w.id}/{perf.performer}: {entry['seconds']:.0f} s, {status}"
        )
    return done


def build_set(
    realdev: Path,
    out: Path,
    seed: int = 0,
    matches_path: Path = DEFAULT_MATCHES,
    show: bool = True,
    engraver: str = "verovio",
) -> dict[str, Any]:
    """Build (or resume) the whole set; returns (and writes) ``set.json``."""
    if engraver not in ENGRAVERS:
        raise ValueError(f"engraver must be one of {ENGRAVERS}, got {engraver!r}")
    works = find_works(realdev)
    canon = canonical_folders(works, load_matches(matches_path))
    pieces = build_all_sheets(works, canon, out, seed, show, engraver)
    perfs = build_all_audio(works, canon, out, realdev, seed, show)
    perfs = [p for p in perfs if p["work"] in pieces]
    doc = {
        "version": 1,
        "realdev": str(realdev),
        "seed": seed,
        "sheets": {
            "engraver": engraver,
            "font": FONT if engraver == "verovio" else "Emmentaler",
            **({"staff_size": LILY_STAFF_SIZE} if engraver == "lilypond" else {}),
            "upscale": UPSCALE,
            "rotation_deg": ROTATION_DEG,
            "blur_radius": BLUR_RADIUS,
            "paper": [PAPER_GAIN, PAPER_OFFSET],
            "grain_std": GRAIN_STD,
        },
        "audio": {
            "synth": "fluidsynth",
            "soundfont": SOUNDFONT,
            "sample_rate": C.SAMPLE_RATE,
            "rt60_range": list(RT60_RANGE),
            "snr_db_range": list(SNR_DB_RANGE),
        },
        "work_folders": len(works),
        "pieces": pieces,
        "performances": perfs,
    }
    write_json(out / "set.json", doc)
    return doc


def link_audio(out: Path, source: Path) -> None:
    """``out/audio`` -> ``source/audio`` (the performances of a set already built), unless ``out``
    has performances of its own."""
    src = (source / "audio").resolve()
    if not src.is_dir():
        raise SystemExit(f"realdev: {src} is not a built set's audio folder")
    link = out / "audio"
    out.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise SystemExit(f"realdev: {link} already holds performances; not replaced")
    link.symlink_to(src, target_is_directory=True)


def summary_lines(doc: dict[str, Any]) -> Iterable[str]:
    hours = sum(p["seconds"] for p in doc["performances"]) / 3600
    yield (
        f"{doc['work_folders']} work folders -> {len(doc['pieces'])} works with pages "
        f"({sum(p['pages'] for p in doc['pieces'].values())} pages, {doc['sheets']['engraver']} "
        f"{doc['sheets']['font']}), "
        f"{len(doc['performances'])} performances ({hours:.1f} h, {SOUNDFONT} soundfont)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--realdev", type=Path, default=DEFAULT_REALDEV)
    p.add_argument("--out", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--matches", type=Path, default=DEFAULT_MATCHES)
    p.add_argument(
        "--engraver",
        choices=ENGRAVERS,
        default="verovio",
        help="who engraves the pages: Verovio in Leland (the set), or LilyPond (a second engraver's hand; "
        "give it its own --out, and --audio-from the set to share its performances)",
    )
    p.add_argument(
        "--audio-from",
        type=Path,
        metavar="SET_DIR",
        help="share this built set's performances (--out/audio becomes a link to SET_DIR/audio)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    t0 = time.time()
    if args.audio_from is not None:
        link_audio(args.out, args.audio_from)
    doc = build_set(args.realdev.resolve(), args.out, args.seed, args.matches, args.progress, args.engraver)
    for line in summary_lines(doc):
        print(f"realdev: {line}; {time.time() - t0:.0f} s; wrote {args.out / 'set.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
