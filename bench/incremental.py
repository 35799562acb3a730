"""Benchmark: the incremental audio encoder (:mod:`scoreid.incremental`) against whole windows.

``python -m bench.incremental [--model models/default] [--audio FLAC ...] [--max-files 24]
[--batches 1 16 64] [--rounds 3] [--out bench/results/incremental.json]``

In one run, on this machine, for the model's fp32 and int8 graphs:

- **agreement** on real audio: every file streamed at the default 0.5-s hop, each sounding window
  embedded whole (``audio.onnx`` / ``audio.int8.onnx``) and incrementally (one stream state per
  file, one window per call, as ``scoreid identify`` does): cosine between the two (mean, min) and
  the max abs difference;
- **cost** per window in steady state, one intra-op thread (process CPU time, ``time.thread_time``):
  ``B`` streams advanced together one hop at a time (one batched call per hop, as the encoder
  service batches sessions), whole vs incremental, the best of ``--rounds`` rounds;
- **multiply-adds** per steady-state window (Conv2d and Linear, counted with forward hooks):
  the whole network, and the stem on 22 new frames + the two 12-frame edges + the head.

Prints a table and writes JSON (CPU named, load average at start and end). ``--audio`` defaults to
the FLACs of ``/work/data/realdev/audio`` when present (the real-dev performances' audio; the first
``--max-files`` in name order), else ``tests/data``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import cpu_name, write_result  # noqa: E402
from scoreid.audio.io import load_audio  # noqa: E402
from scoreid.audio.spectrogram import OnlineSpectrogram  # noqa: E402
from scoreid.identify.windows import HopWindows, hop_frames_of  # noqa: E402
from scoreid.inference import load_model  # noqa: E402
from scoreid.tensors import audio_to_network  # noqa: E402

HOP_S = 0.5


def default_audio(max_files: int) -> list[Path]:
    real = sorted(Path("/work/data/realdev/audio").glob("*/*.flac"))
    files = real if real else sorted((ROOT / "tests" / "data").glob("*.flac"))
    return files[:max_files]


def sounding_windows(path: Path, max_s: float) -> tuple[np.ndarray, list[int]]:
    """(N, 1, 92, F) network inputs of a file's sounding windows at the default hop, and their end frames."""
    audio = load_audio(path)[: int(max_s * 22050)]
    front, hw = OnlineSpectrogram(), HopWindows(hop_frames_of(HOP_S))
    wins = [w for w in hw.push(front.push(audio)) + hw.finish(front.flush()) if not w.silent]
    return audio_to_network(np.stack([w.excerpt for w in wins])), [w.end for w in wins]


def agreement(enc: Any, files: list[Path], max_s: float) -> dict[str, Any]:
    cos_all, diff = [], 0.0
    for path in files:
        x, ends = sounding_windows(path, max_s)
        state = enc.new_stream()
        inc = np.concatenate([enc.embed_stream(x[i : i + 1], [e], [state]) for i, e in enumerate(ends)])
        whole = enc.embed_audio(x)
        cos_all.append(np.sum(inc * whole, axis=1))
        diff = max(diff, float(np.abs(inc - whole).max()))
    cos = np.concatenate(cos_all)
    return {
        "windows": int(len(cos)),
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "max_abs_diff": diff,
    }


def cost(enc: Any, batch: int, hops: int, rounds: int) -> dict[str, float]:
    """CPU ms per window, whole vs incremental, ``batch`` random streams advanced together."""
    rng = np.random.default_rng(0)
    streams = []
    for _ in range(batch):
        hw = HopWindows(hop_frames_of(HOP_S))
        wins = hw.push((rng.random((84 + 10 * (hops + 4), 92)) * 0.6).astype(np.float32))
        streams.append(wins)
    xs = [audio_to_network(np.stack([s[k].excerpt for s in streams])) for k in range(len(streams[0]))]
    ends = [[s[k].end for s in streams] for k in range(len(streams[0]))]
    best = {"whole": np.inf, "incremental": np.inf}
    for _ in range(rounds):
        for name in best:
            states = [enc.new_stream() for _ in range(batch)]
            spent = 0.0
            for k, x in enumerate(xs):
                t0 = time.thread_time()
                if name == "whole":
                    enc.embed_audio(x)
                else:
                    enc.embed_stream(x, ends[k], states)
                if k >= 4:  # steady state: the first windows of a stream compute their whole interior
                    spent += time.thread_time() - t0
            best[name] = min(best[name], spent / ((len(xs) - 4) * batch) * 1000)
    return {k: round(float(v), 4) for k, v in best.items()}


def multiply_adds(model_dir: Path) -> dict[str, int]:
    import torch

    from scoreid.incremental import EDGE_FRAMES
    from scoreid.models import load_checkpoint
    from scoreid.models.crossmodal import AudioEmbedder
    from scoreid.models.encoders import multiply_adds as count
    from scoreid.models.split import AudioHead, AudioStem

    net = load_checkpoint(model_dir / "model.pt")
    with torch.inference_mode():
        cols = AudioStem(net, valid=False)(torch.zeros(1, 1, 92, net.audio_frames)).shape[1:]
    steady = (
        count(AudioStem(net, valid=True), (1, 92, 22))
        + 2 * count(AudioStem(net, valid=False), (1, 92, EDGE_FRAMES))
        + count(AudioHead(net), tuple(cols))
    )
    return {"whole": count(AudioEmbedder(net), (1, 92, net.audio_frames)), "incremental_steady": steady}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument(
        "--audio", type=Path, nargs="*", help="FLAC files (default: real-dev's audio, else tests/data)"
    )
    ap.add_argument("--max-files", type=int, default=24)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="seconds of each file streamed")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--hops", type=int, default=40, help="hops per stream in the cost runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "incremental.json")
    args = ap.parse_args(argv)
    files = list(args.audio) if args.audio else default_audio(args.max_files)
    if not files:
        raise SystemExit("no audio files: give --audio")
    load_start = os.getloadavg()[0]
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "model": str(args.model),
        "files": [str(f) for f in files],
        "hop_s": HOP_S,
        "multiply_adds": multiply_adds(args.model),
        "precisions": {},
    }
    for precision in ("fp32", "int8"):
        enc = load_model(args.model, precision=precision, threads=1)
        if enc.incremental is None:
            print(f"{precision}: the model has no incremental graphs (trainer/run.py export-incremental)")
            continue
        row: dict[str, Any] = {"agreement": agreement(enc, files, args.max_seconds), "ms_per_window": {}}
        for b in args.batches:
            row["ms_per_window"][str(b)] = cost(enc, b, args.hops, args.rounds)
            print(f"{precision} batch {b}: {row['ms_per_window'][str(b)]}", flush=True)
        result["precisions"][precision] = row
    result["load_average"] = {"start": round(load_start, 1), "end": round(os.getloadavg()[0], 1)}
    ma = result["multiply_adds"]
    print(
        f"\n{result['cpu']}; multiply-adds per window: whole {ma['whole'] / 1e6:.0f} M, "
        f"incremental (steady) {ma['incremental_steady'] / 1e6:.0f} M"
    )
    print(
        "| precision | windows | cos mean / min | "
        + " | ".join(f"B={b} whole → incr. ms" for b in args.batches)
        + " |"
    )
    for precision, row in result["precisions"].items():
        a = row["agreement"]
        cells = " | ".join(
            f"{row['ms_per_window'][str(b)]['whole']:.3f} → {row['ms_per_window'][str(b)]['incremental']:.3f}"
            for b in args.batches
        )
        print(f"| {precision} | {a['windows']} | {a['cos_mean']:.5f} / {a['cos_min']:.5f} | {cells} |")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
