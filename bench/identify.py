"""Benchmark: time to identify — seconds of audio until the top-1 piece is right and stays right.

``python -m bench.identify --model models/default --data DATA/corpus [--split test]
[--condition shifted] [--max-seconds 60] [--starts 0,0.5] [--vote-temperature T] [--chance-exponent A]
[--out bench/results/identify.json]``

``--vote-temperature inf --chance-exponent 0`` measures the published vote scheme (one vote per
neighbour); the defaults are the product's (:mod:`scoreid.identify.tally`). The defaults were chosen
with ``--split valid`` (20 pieces the model never trained on, not the test pieces).

1. Builds a sheet library from the split's page images of the condition's look (``shifted``: the
   Petaluma font, never seen in training) with the product path — staff systems detected from
   pixels, snippets embedded by the model's sheet encoder (``scoreid.library.build``); cached in
   ``--work`` per model.
2. Streams every recording of the condition (``shifted``: csound soundfont, tempo outside the
   training range, room and noise) through :class:`scoreid.identify.stream.Identifier` in hops of
   ``--hop`` s — the stored corpus spectrogram is fed frame-exactly (``push_frames``), from each
   start in ``--starts`` (fractions of the recording: 0 = from the first bar, 0.5 = joining in the
   middle) for at most ``--max-seconds``.
3. Time to identify of a stream: the earliest hop from which the top-1 is the right piece at every
   later hop of the stream (a stream never right at its end counts as not identified, +inf).
   Reports the median over streams, the share identified, and accuracy (top-1 right) vs seconds;
   prints a table, writes JSON (``median_seconds_to_identify``, ``date``, ``machine``) and a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.identify.engine import CANDIDATES, DEFAULT_HOP_S, SEQUENCE_WEIGHT
from scoreid.identify.stream import Identifier, time_to_identify
from scoreid.identify.tally import CHANCE_EXPONENT, VOTE_TEMPERATURE
from scoreid.inference import load_model
from scoreid.library.build import add_folder, open_or_create
from scoreid.library.store import Library, write_index
from scoreid.tensors import model_fingerprint
from trainer.corpus.store import Corpus

ROOT = Path(__file__).resolve().parents[1]


def write_sheet_folder(folder: Path, pid: str, meta: dict[str, Any], pages: Sequence[Path]) -> None:
    """A piece as a user gives it to ``scoreid library build``: its page images and a ``piece.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    for pg in pages:
        shutil.copyfile(pg, folder / Path(pg).name)
    (folder / "piece.json").write_text(
        json.dumps({"title": meta.get("title", pid), "composer": meta.get("composer", "")})
    )


def build_library(
    corpus: Corpus, pids: list[str], condition: str, model: Path, work: Path, stride: float | None
) -> Library:
    lib_dir = work / f"library-{condition}-{model_fingerprint(model)[:12]}"
    enc = load_model(model)
    index = open_or_create(lib_dir, enc, model, stride)
    extra = sorted(set(index.get("pieces", {})) - set(pids))
    if extra:  # another split's run shared this --work: its pieces would be distractors here
        raise SystemExit(
            f"bench: {lib_dir} also holds {len(extra)} pieces not asked for ({extra[0]}, ...); "
            "use another --work or delete it"
        )
    for pid in pids:
        piece = corpus.load(pid)
        render = next((r for r in piece.renders if r.condition == condition), None)
        if render is None or not render.page_paths:
            continue
        folder = work / "sheets" / condition / pid
        if not folder.is_dir():
            write_sheet_folder(folder, pid, piece.meta, render.page_paths)
        add_folder(index, lib_dir, folder, enc, lambda m: print(f"library: {m}", file=sys.stderr))
    write_index(lib_dir, index)
    return Library.open(lib_dir)


def stream_parts(spec: np.ndarray, starts: Sequence[float], seconds: float) -> list[tuple[float, np.ndarray]]:
    """(start, frames) of each stream of a recording: from each start (a fraction of the recording)
    at most ``seconds``; a stream shorter than one audio window is left out."""
    parts = []
    for start in starts:
        a = int(start * len(spec))
        part = spec[a : a + int(seconds * C.FPS)]
        if len(part) >= C.AUDIO_WINDOW_FRAMES:
            parts.append((start, part))
    return parts


def candidates(ident: Identifier) -> list[list[Any]]:
    """The followed candidates now: [piece, tally, sequence evidence (piece null), coherence,
    sequence evidence (library null)] of the tally's top ``EngineSettings.candidates`` (``--candidates``)."""
    f = ident.engine.follower
    return [
        [
            p,
            round(v, 6),
            round(f.evidence(p), 4),
            round(f.coherence(p), 3),
            round(f.evidence(p, "library"), 4),
        ]
        for p, v in ident.engine.tally.top(f.max_candidates)
    ]


def stream_times(
    lib: Library, enc, spec: np.ndarray, truth: str, hop_s: float, hops: list | None = None, **votes: Any
) -> tuple[list[float], list[bool]]:  # type: ignore[no-untyped-def]
    """(hop times, top-1 right at each); ``hops`` gets each hop's followed candidates (``--dump``)."""
    ident = Identifier(lib, enc, hop_s=hop_s, **votes)
    step = max(1, int(round(hop_s * C.FPS)))
    ts, right = [], []
    for s in range(0, len(spec), step):
        for u in ident.push_frames(spec[s : s + step]):
            ts.append(u.t)
            right.append(bool(u.ranking) and u.ranking[0][0] == truth)
            if hops is not None:
                hops.append([u.t, candidates(ident)])
    return ts, right


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--data", type=Path, required=True, help="corpus directory (trainer/run.py corpus build)")
    p.add_argument("--split", default="test")
    p.add_argument("--condition", default="shifted", choices=("same", "shifted"))
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--starts", default="0,0.5", help="stream start positions, fractions of each recording")
    p.add_argument(
        "--stride", type=float, default=None, help="library window stride px (default the library's)"
    )
    p.add_argument(
        "--vote-temperature",
        type=float,
        default=VOTE_TEMPERATURE,
        help=f"similarity temperature of a neighbour's vote (default {VOTE_TEMPERATURE}; inf = 1 per vote)",
    )
    p.add_argument(
        "--chance-exponent",
        type=float,
        default=CHANCE_EXPONENT,
        help=f"piece-length normalisation exponent (default {CHANCE_EXPONENT}; 0 = none)",
    )
    p.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="write every hop's followed candidates as JSON (bench/sequence_weight.py --at)",
    )
    p.add_argument(
        "--sequence-weight",
        type=float,
        default=SEQUENCE_WEIGHT,
        help="order the followed candidates by log(tally) + W x sequence evidence (default: the engine's; 0: off)",
    )
    p.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "scoreid-bench-identify"
    )
    p.add_argument(
        "--candidates", type=int, default=CANDIDATES, help="pieces of the tally followed (and reordered)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "identify.json")
    args = p.parse_args(argv)
    if not (args.model / "manifest.json").is_file():
        raise SystemExit(f"bench/identify: no model at {args.model} (manifest.json)")
    corpus = Corpus(args.data)
    pids = corpus.ids(args.split)
    if not pids:
        raise SystemExit(f"bench/identify: no {args.split} pieces in {args.data}")
    starts = [float(x) for x in args.starts.split(",") if x.strip()]
    t0 = time.perf_counter()
    lib = build_library(corpus, pids, args.condition, args.model, args.work, args.stride)
    t_lib = time.perf_counter() - t0
    enc = load_model(args.model, threads=1)
    streams: list[dict[str, Any]] = []
    dumped: list = []
    t1 = time.perf_counter()
    for pid in pids:
        if pid not in lib.pieces:
            continue
        for j, perf in enumerate(corpus.load(pid).performances):
            if perf.condition != args.condition:
                continue
            spec = perf.spec.astype(np.float32)
            for start, part in stream_parts(spec, starts, args.max_seconds):
                hops: list | None = [] if args.dump else None
                ts, right = stream_times(
                    lib,
                    enc,
                    part,
                    pid,
                    args.hop,
                    hops,
                    vote_temperature=args.vote_temperature,
                    chance_exponent=args.chance_exponent,
                    sequence_weight=args.sequence_weight,
                    candidates=args.candidates,
                )
                if hops is not None:
                    dumped.append({"truth": pid, "start": start, "hops": hops})
                streams.append(
                    {
                        "piece": pid,
                        "performance": j,
                        "start": start,
                        "seconds": len(part) / C.FPS,
                        "tti": time_to_identify(ts, right),
                        "t": ts,
                        "right": right,
                    }
                )
    t_id = time.perf_counter() - t1
    if args.dump:
        args.dump.parent.mkdir(parents=True, exist_ok=True)
        args.dump.write_text(json.dumps(dumped))
        print(f"wrote every hop's followed candidates to {args.dump}")
    if not streams:
        raise SystemExit("bench/identify: no recordings of that split and condition in the library")
    grid = np.arange(args.hop, args.max_seconds + 1e-9, args.hop)
    acc = []
    for g in grid:
        vals = [s["right"][min(int(round(g / args.hop)) - 1, len(s["right"]) - 1)] for s in streams if s["t"]]
        acc.append(float(np.mean(vals)))
    rows = []
    for start in starts:
        tt = np.array([s["tti"] for s in streams if s["start"] == start])
        rows.append(
            {
                "start": start,
                "streams": int(len(tt)),
                "median_s": float(np.median(tt)),
                "identified": float(np.isfinite(tt).mean()),
                "p75_s": float(np.percentile(tt, 75)),
                "within_5s": float((tt <= 5).mean()),
                "within_10s": float((tt <= 10).mean()),
            }
        )
    all_tt = np.array([s["tti"] for s in streams])
    audio_s = sum(s["seconds"] for s in streams)
    result = {
        "median_seconds_to_identify": float(np.median(all_tt)),
        "identified": float(np.isfinite(all_tt).mean()),
        "streams": len(streams),
        "pieces_in_library": len(lib.piece_ids),
        "library_windows": len(lib),
        "per_start": rows,
        "accuracy_vs_seconds": {"seconds": grid.round(3).tolist(), "top1": [round(a, 4) for a in acc]},
        "split": args.split,
        "condition": args.condition,
        "hop_s": args.hop,
        "max_seconds": args.max_seconds,
        "vote_temperature": args.vote_temperature,
        "chance_exponent": args.chance_exponent,
        "sequence_weight": args.sequence_weight,
        "candidates": args.candidates,
        "model": str(args.model),
        "library_build_s": round(t_lib, 1),
        "identify_x_real_time": round(audio_s / max(t_id, 1e-9), 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
    }
    print(
        f"time to identify ({args.split}/{args.condition}, {len(lib.piece_ids)} pieces in the library, "
        f"hop {args.hop} s, at most {args.max_seconds:g} s per stream; vote temperature "
        f"{args.vote_temperature:g}, chance exponent {args.chance_exponent:g})"
    )
    print("| start | streams | median s | p75 s | identified | within 5 s | within 10 s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['start']:g} | {r['streams']} | {r['median_s']:.1f} | {r['p75_s']:.1f} | {r['identified']:.1%} "
            f"| {r['within_5s']:.1%} | {r['within_10s']:.1%} |"
        )
    print(f"median over all {len(streams)} streams: {result['median_seconds_to_identify']:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


def plot(result: dict, path: Path) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    c = result["accuracy_vs_seconds"]
    ax.plot(c["seconds"], c["top1"], "b.-", ms=3)
    ax.axvline(
        result["median_seconds_to_identify"],
        color="r",
        ls="--",
        label=f"median time to identify {result['median_seconds_to_identify']:.1f} s",
    )
    ax.set_xlabel("seconds of audio streamed")
    ax.set_ylabel("top-1 correct (share of streams)")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"{result['split']}/{result['condition']}: {result['streams']} streams, "
        f"{result['pieces_in_library']} pieces"
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
