"""Benchmark: the session engine's settings swept on both validation sets, the encoder run once.

``python -m bench.engine_sweep --model models/default --corpus DATA/corpus --realdev DATA/realdev
[--grid half_life=10,20,40 k=10,25 ...] [--work DIR] [--out FILE]``

The identification benches (``bench/realdev.py``: real performances, 10 / 20 / 30-s excerpts;
``python -m bench.identify --split valid``: synthetic ``shifted`` streams of the valid split) spend nearly
all their time in the audio encoder, whose output does not depend on the engine's settings (vote
half-life and temperature, neighbours per window, chance exponent, sequence weight and null,
followed candidates). This bench runs each set's windows through the encoder and the exact search
**once** (the same libraries — cached where those benches cache them, ``--realdev-work`` and
``--valid-work`` —, excerpts, windowing and silence rule; the embeddings and every window's top
50 hits (``RECORD_K``) are cached in ``--work`` per model), then replays the
session engine (:class:`scoreid.identify.engine.SessionEngine`) for every setting of ``--grid``
(the cartesian product; unnamed settings keep the engine's defaults):

- real-dev: top-1 and MRR of the final ranking per excerpt length, median time to identify over
  the longest excerpts (as ``bench/realdev.py``);
- synthetic valid: top-1 at 5 / 10 / 20 / 30 / 60 s and the median time to identify over the
  streams (as ``bench/identify.py``).

The windows are encoded in batches, not one by one as a stream does, so an embedding can differ from
the streaming benches' in the last bits; the row of the engine's defaults is printed first so the
replay can be checked against ``bench/realdev.py`` / ``bench/identify.py``. Both sets are
validation sets: choose here, then confirm the choice with the streaming benches and report on the
test split once. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import cpu_name, write_result
from scoreid import contract as C
from scoreid.audio.spectrogram import OnlineSpectrogram
from scoreid.identify.engine import DEFAULT_HOP_S, TOP_K, EngineSettings, SessionEngine
from scoreid.identify.stream import time_to_identify
from scoreid.identify.windows import HopWindows, Window, hop_frames_of
from scoreid.library.store import Library
from scoreid.search.exact import ExactIndex
from scoreid.tensors import audio_to_network, model_fingerprint

ROOT = Path(__file__).resolve().parents[1]

VALID_AT_S = (5.0, 10.0, 20.0, 30.0, 60.0)  #: synthetic valid: top-1 reported at these seconds
#: the settings a grid may name: EngineSettings' fields (hop_s excepted: it changes the windows) and k
SWEEPABLE = {f.name: f.type for f in fields(EngineSettings) if f.name != "hop_s"} | {"k": "int"}
RECORD_K = 50  #: hits recorded per window: a grid's k is at most this


@dataclass
class Recorded:
    """One stream's windows after the encoder and the search: what the engine sees."""

    key: str  #: set/piece/excerpt name
    truth: str
    length_s: float  #: real-dev: the excerpt's length; valid: the stream's seconds
    t: np.ndarray  #: (W,) window times
    silent: np.ndarray  #: (W,) bool
    emb: np.ndarray  #: (W, D) embeddings (zeros for silent windows)
    hit_rows: np.ndarray  #: (W, K) library rows of the top-K hits, best first
    hit_sims: np.ndarray  #: (W, K)
    t_end: float  #: the stream's end (the final snapshot's time)


def log(msg: str) -> None:
    print(f"engine_sweep: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- recording
def windows_of_audio(audio: np.ndarray, hop_s: float, frames: int) -> list[Window]:
    """The windows ``scoreid identify`` makes of ``audio`` (front end, hop windows, silence rule)."""
    front = OnlineSpectrogram()
    hw = HopWindows(hop_frames_of(hop_s), frames)
    return hw.push(front.push(audio)) + hw.finish(front.flush())


def windows_of_frames(spec: np.ndarray, hop_s: float, frames: int) -> list[Window]:
    """The windows of stored spectrogram frames (``Identifier.push_frames``, no finish)."""
    hw = HopWindows(hop_frames_of(hop_s), frames)
    return hw.push(np.asarray(spec, np.float32))


def record(
    lib: Library,
    index: ExactIndex,
    enc: Any,
    key: str,
    truth: str,
    length_s: float,
    wins: list[Window],
    t_end: float,
    k: int,
    batch: int = 256,
) -> Recorded:
    dim = lib.vectors.shape[1]
    t = np.array([w.t for w in wins], np.float64)
    silent = np.array([w.silent for w in wins], bool)
    emb = np.zeros((len(wins), dim), np.float32)
    sounding = np.flatnonzero(~silent)
    for a in range(0, len(sounding), batch):
        idx = sounding[a : a + batch]
        emb[idx] = enc.embed_audio(audio_to_network(np.stack([wins[i].excerpt for i in idx])))
    rows = np.zeros((len(wins), k), np.int64)
    sims = np.zeros((len(wins), k), np.float32)
    if len(sounding):
        s, r = index.search(lib.search_queries(emb[sounding]), k)
        rows[sounding], sims[sounding] = r, s
    return Recorded(key, truth, length_s, t, silent, emb, rows, sims, t_end)


def record_realdev(args: argparse.Namespace, enc: Any, k: int) -> tuple[Library, list[Recorded]]:
    from bench import realdev as R
    from trainer.realdev.excerpts import plan_excerpts
    from trainer.realdev.matches import load_matches, matched_corpus_pids
    from trainer.realdev.works import work_id

    set_doc = json.loads((args.realdev / "set.json").read_text())
    fp = model_fingerprint(args.model)[:12]
    folders = [args.realdev / "pieces" / w for w in sorted(set_doc["pieces"])]
    corpus_folders, _excluded = R.corpus_test_folders(
        args.corpus,
        "shifted",
        matched_corpus_pids(load_matches(R.DEFAULT_MATCHES)),
        args.realdev_work / "sheets" / "shifted",
    )
    lib = R.build_library(
        folders + corpus_folders, args.model, args.realdev_work / f"library-shifted-{fp}", log
    )
    perfs = R.select_performances(set_doc["performances"], None)
    lengths = [float(x) for x in args.lengths.split(",")]
    plan = plan_excerpts(
        [(work_id(p["folder"]), p["performer"], p["seconds"]) for p in perfs], lengths, args.seed
    )
    by_key = {(work_id(p["folder"]), p["performer"]): p for p in perfs}
    index = ExactIndex(lib.search_vectors)
    out = []
    for n, ex in enumerate(plan):
        p = by_key[(ex.folder, ex.performer)]
        audio = R.read_excerpt(args.realdev / p["audio"], ex.start_s, ex.length_s)
        wins = windows_of_audio(audio, args.hop, lib.contract.audio_window_frames)
        key = f"realdev/{ex.folder}/{ex.performer}/{ex.length_s:g}@{ex.start_s:.2f}"
        out.append(record(lib, index, enc, key, p["work"], ex.length_s, wins, len(audio) / C.SAMPLE_RATE, k))
        if (n + 1) % 30 == 0:
            log(f"real-dev: {n + 1}/{len(plan)} excerpts recorded")
    return lib, out


def record_valid(args: argparse.Namespace, enc: Any, k: int) -> tuple[Library, list[Recorded]]:
    from bench import identify as I
    from trainer.corpus.store import Corpus

    corpus = Corpus(args.corpus)
    pids = corpus.ids("valid")
    lib = I.build_library(corpus, pids, "shifted", args.model, args.valid_work, None)
    index = ExactIndex(lib.search_vectors)
    out = []
    for pid in pids:
        if pid not in lib.pieces:
            continue
        for j, perf in enumerate(corpus.load(pid).performances):
            if perf.condition != "shifted":
                continue
            spec = perf.spec.astype(np.float32)
            for start, part in I.stream_parts(spec, (0.0, 0.5), args.valid_seconds):
                wins = windows_of_frames(part, args.hop, lib.contract.audio_window_frames)
                key = f"valid/{pid}/{j}@{start:g}"
                out.append(record(lib, index, enc, key, pid, len(part) / C.FPS, wins, len(part) / C.FPS, k))
    log(f"valid: {len(out)} streams recorded")
    return lib, out


def cached(path: Path, make: Callable[[], list[Recorded]]) -> list[Recorded]:
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        keys = json.loads(str(z["keys"]))
        return [
            Recorded(
                k["key"],
                k["truth"],
                k["length_s"],
                z[f"t{i}"],
                z[f"s{i}"],
                z[f"e{i}"],
                z[f"r{i}"],
                z[f"h{i}"],
                k["t_end"],
            )
            for i, k in enumerate(keys)
        ]
    recs = make()
    arrays: dict[str, Any] = {}
    for i, r in enumerate(recs):
        arrays.update(
            {f"t{i}": r.t, f"s{i}": r.silent, f"e{i}": r.emb, f"r{i}": r.hit_rows, f"h{i}": r.hit_sims}
        )
    meta = [{"key": r.key, "truth": r.truth, "length_s": r.length_s, "t_end": r.t_end} for r in recs]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=json.dumps(meta), **arrays)
    os.replace(tmp, path)
    return recs


# ---------------------------------------------------------------------------- replay
def replay(
    lib: Library, rec: Recorded, settings: EngineSettings, k: int
) -> tuple[int | None, float, list[bool]]:
    """(rank of the truth in the final ranking — None: no vote —, time to identify, top-1 right at
    each hop) of one recorded stream, as the streaming benches compute them."""
    eng = SessionEngine(lib, settings)
    pieces = lib.meta["piece"]
    ts: list[float] = []
    right: list[bool] = []
    for w in range(len(rec.t)):
        t = float(rec.t[w])
        if rec.silent[w]:
            u = eng.silent(t)
        else:
            hits = [(str(pieces[r]), float(s)) for r, s in zip(rec.hit_rows[w, :k], rec.hit_sims[w, :k])]
            u = eng.vote(t, rec.emb[w], hits)
        ts.append(u.t)
        right.append(bool(u.ranking) and u.ranking[0][0] == rec.truth)
    final = eng.snapshot(rec.t_end).ranking
    rank = next((i + 1 for i, (pid, _s, _v) in enumerate(final) if pid == rec.truth), None)
    return rank, time_to_identify(ts, right), right


def median_tti(tti: Sequence[float]) -> float | None:
    m = float(np.median(np.asarray(tti, np.float64))) if len(tti) else float("inf")
    return m if np.isfinite(m) else None


def summarise_realdev(
    recs: list[Recorded], out: list[tuple[int | None, float, list[bool]]]
) -> dict[str, Any]:
    lengths = sorted({r.length_s for r in recs})
    row: dict[str, Any] = {}
    for L in lengths:
        sel = [o for r, o in zip(recs, out) if r.length_s == L]
        row[f"top1_{L:g}"] = round(float(np.mean([o[0] == 1 for o in sel])), 4)
        row[f"mrr_{L:g}"] = round(float(np.mean([1.0 / o[0] if o[0] else 0.0 for o in sel])), 4)
    row["median_tti_s"] = median_tti([o[1] for r, o in zip(recs, out) if r.length_s == lengths[-1]])
    return row


def summarise_valid(out: list[tuple[int | None, float, list[bool]]], hop_s: float) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for s in VALID_AT_S:
        vals = [r[min(int(round(s / hop_s)) - 1, len(r) - 1)] for _rank, _tti, r in out if r]
        row[f"top1_{s:g}"] = round(float(np.mean(vals)), 4)
    row["median_tti_s"] = median_tti([o[1] for o in out])
    return row


def parse_grid(items: Sequence[str]) -> list[dict[str, Any]]:
    """``name=v1,v2`` items -> the cartesian product as dicts (the defaults' row first)."""
    axes: list[tuple[str, list[Any]]] = []
    for it in items:
        name, _, vals = it.partition("=")
        if name not in SWEEPABLE or not vals:
            raise SystemExit(
                f"engine_sweep: --grid takes NAME=V1,V2,... with NAME one of {sorted(SWEEPABLE)}; got {it!r}"
            )
        conv: Callable[[str], Any] = (
            str if name in ("follower", "evidence") else (int if name in ("k", "candidates") else float)
        )
        axes.append((name, [conv(v) for v in vals.split(",")]))
        if name == "k" and not all(1 <= v <= RECORD_K for v in axes[-1][1]):
            raise SystemExit(f"engine_sweep: k must be 1..{RECORD_K}, got {vals}")
    combos = [dict(zip([a for a, _ in axes], vs)) for vs in itertools.product(*[v for _, v in axes])]
    return [{}] + [c for c in combos if c]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--corpus", type=Path, required=True, help="corpus (valid split; real-dev distractors)")
    p.add_argument(
        "--realdev", type=Path, required=True, help="the real-dev set (python -m trainer.realdev.build)"
    )
    p.add_argument("--lengths", default="10,20,30", help="real-dev excerpt lengths, seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the real-dev excerpt offsets")
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    p.add_argument("--valid-seconds", type=float, default=60.0, help="synthetic valid: seconds per stream")
    p.add_argument("--grid", nargs="*", default=[], help="NAME=V1,V2,... (EngineSettings fields, or k)")
    p.add_argument("--sets", default="realdev,valid", help="which validation sets")
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    p.add_argument("--work", type=Path, default=tmp / "scoreid-bench-sweep", help="the recorded windows")
    p.add_argument(
        "--realdev-work",
        type=Path,
        default=tmp / "scoreid-bench-realdev",
        help="real-dev library cache (bench/realdev.py --work)",
    )
    p.add_argument(
        "--valid-work",
        type=Path,
        default=tmp / "scoreid-bench-identify-valid",
        help="valid library cache (bench/identify.py --work)",
    )
    p.add_argument("--threads", type=int, default=1, help="encoder threads while recording")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine_sweep.json")
    args = p.parse_args(argv)
    if not (args.model / "manifest.json").is_file():
        raise SystemExit(f"engine_sweep: no model at {args.model} (manifest.json)")
    grid = parse_grid(args.grid)
    sets = [s for s in args.sets.split(",") if s]
    from scoreid.inference import load_model

    enc = load_model(args.model, threads=args.threads)
    fp = model_fingerprint(args.model)[:12]
    tag = hashlib.sha256(
        f"{args.lengths}|{args.seed}|{args.hop}|{args.valid_seconds}|{RECORD_K}".encode()
    ).hexdigest()[:8]
    data: dict[str, tuple[Library, list[Recorded]]] = {}
    t0 = time.perf_counter()
    for s in sets:
        holder: dict[str, Library] = {}

        def make(s: str = s, holder: dict[str, Library] = holder) -> list[Recorded]:
            lib, recs = (record_realdev if s == "realdev" else record_valid)(args, enc, RECORD_K)
            holder["lib"] = lib
            return recs

        recs = cached(args.work / f"{s}-{fp}-{tag}.npz", make)
        lib_work = args.realdev_work if s == "realdev" else args.valid_work
        lib = holder.get("lib") or Library.open(lib_work / f"library-shifted-{fp}")
        data[s] = (lib, recs)
        log(
            f"{s}: {len(recs)} streams, {sum(len(r.t) for r in recs)} windows, library {len(lib.piece_ids)} pieces"
        )
    t_rec = time.perf_counter() - t0
    rows = []
    for g in grid:
        k = int(g.get("k", TOP_K))
        settings = EngineSettings(**({"hop_s": args.hop} | {n: v for n, v in g.items() if n != "k"}))
        row: dict[str, Any] = {
            "setting": g or "defaults",
            "k": k,
            **{n: v for n, v in asdict(settings).items()},
        }
        t1 = time.perf_counter()
        if "realdev" in data:
            lib, recs = data["realdev"]
            row["realdev"] = summarise_realdev(recs, [replay(lib, r, settings, k) for r in recs])
        if "valid" in data:
            lib, recs = data["valid"]
            row["valid"] = summarise_valid([replay(lib, r, settings, k) for r in recs], args.hop)
        row["replay_s"] = round(time.perf_counter() - t1, 1)
        rows.append(row)
        log(f"{g or 'defaults'}: {json.dumps({s: row[s] for s in data})}")
    print_table(rows, list(data))
    result = {
        "name": "engine settings on both validation sets (encoder once, engine replayed)",
        "model": str(args.model),
        "model_sha256_12": fp,
        "lengths": args.lengths,
        "seed": args.seed,
        "hop_s": args.hop,
        "valid_seconds": args.valid_seconds,
        "record_s": round(t_rec, 1),
        "cpu": cpu_name(),
        "rows": rows,
    }
    write_result(args.out, result)
    return 0


def print_table(rows: list[dict[str, Any]], sets: list[str]) -> None:
    head = ["setting"]
    if "realdev" in sets:
        head += ["real-dev top-1 10 / 20 / 30 s", "real-dev TTI s"]
    if "valid" in sets:
        head += ["valid top-1 5 / 10 / 20 / 30 / 60 s", "valid TTI s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [
            ", ".join(f"{n}={v}" for n, v in r["setting"].items())
            if isinstance(r["setting"], dict)
            else r["setting"]
        ]
        for s in sets:
            d = r[s]
            tops = [v for n, v in d.items() if n.startswith("top1_")]
            cells += [
                " / ".join(f"{v:.3f}" for v in tops),
                "never" if d["median_tti_s"] is None else f"{d['median_tti_s']:.1f}",
            ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
