"""Benchmark: the int8 audio encoder on each x86-64 CPU kind — cosine to fp32 and speed.

``python -m bench.int8_cpu --model models/default --data DATA/corpus [--n 256] [--out bench/results/int8_cpu.json]``

ONNX Runtime picks its int8 kernels by the CPU's instruction set: VNNI (``vpdpbusd``, int32
accumulation) on AVX-512 VNNI / AVX-VNNI CPUs, ``vpmaddubsw`` (pairs of u8 x s8 products summed in
saturating int16) on AVX2-only CPUs such as AMD EPYC Zen 2/3. The model's ``audio.int8.onnx`` is run
on ``--n`` real spectrogram excerpts spread evenly over the corpus test split (condition
``same``):

- natively, on this CPU (named in the output): cosine to the fp32 ``audio.onnx`` embeddings, and
  windows/s of fp32 and int8 at batch 32 on one thread (best of ``--rounds``);
- on an emulated AVX2-only CPU (``qemu-x86_64 -cpu Haswell``: AVX2 + FMA, no AVX-512, no VNNI),
  the same cosine and the largest difference to the native int8 embeddings (emulated speed means
  nothing, so none is reported). ``--model-dir-extra`` adds other int8 files to compare.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import cpu_name, write_result

ROOT = Path(__file__).resolve().parents[1]

EMULATED_AVX2 = ["qemu-x86_64", "-cpu", "Haswell"]
RUN = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2]); n = s.get_inputs()[0].name
np.save(sys.argv[3], np.concatenate([s.run(None, {n: x[i:i + 32]})[0] for i in range(0, len(x), 32)]))
"""


def embed(model: Path, x_path: Path, out: Path, prefix: list[str]) -> np.ndarray:
    r = subprocess.run(
        [*prefix, sys.executable, "-c", RUN, str(model), str(x_path), str(out)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if r.returncode != 0:
        raise SystemExit(f"bench/int8_cpu: {model.name} failed: {r.stderr[-500:]}")
    return np.load(out)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def speed(model: Path, x: np.ndarray, rounds: int) -> float:
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    s = ort.InferenceSession(str(model), o, providers=["CPUExecutionProvider"])
    name, b = s.get_inputs()[0].name, x[:32]
    s.run(None, {name: b})
    best = 0.0
    for _ in range(rounds):
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.5:
            s.run(None, {name: b})
            k += 1
        best = max(best, 32 * k / (time.perf_counter() - t0))
    return best


def main(argv: list[str] | None = None) -> int:
    from trainer.corpus.store import Corpus
    from trainer.data import PairSet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--data", type=Path, required=True, help="corpus (real excerpts of its test split)")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--extra", type=Path, nargs="*", default=[], help="other int8 ONNX files to compare")
    p.add_argument("--no-emulation", action="store_true", help="skip the emulated AVX2 CPU")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_cpu.json")
    args = p.parse_args(argv)
    manifest = json.loads((args.model / "manifest.json").read_text())
    fp32 = args.model / manifest["files"]["audio_onnx"]
    models = [args.model / manifest["files"]["audio_onnx_int8"], *args.extra]
    pairs = PairSet.from_corpus(Corpus(args.data), "test", "same")
    if not len(pairs):
        raise SystemExit(f"bench/int8_cpu: no corpus test excerpts in {args.data}")
    x = pairs.audio_batch(pairs.evenly(args.n), int(manifest["contract"]["audio_window_frames"]))
    emulate = not args.no_emulation and shutil.which(EMULATED_AVX2[0]) is not None
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        xp = Path(tmp) / "x.npy"
        np.save(xp, x)
        ref = embed(fp32, xp, Path(tmp) / "ref.npy", [])
        fp32_speed = speed(fp32, x, args.rounds)
        for m in models:
            native = embed(m, xp, Path(tmp) / "native.npy", [])
            c = cosine(native, ref)
            row = {
                "model": str(m.relative_to(ROOT) if m.is_relative_to(ROOT) else m),
                "n": len(x),
                "native_cos_mean": float(c.mean()),
                "native_cos_min": float(c.min()),
                "native_win_s": speed(m, x, args.rounds),
                "fp32_win_s": fp32_speed,
            }
            if emulate:
                emu = embed(m, xp, Path(tmp) / "emu.npy", EMULATED_AVX2)
                ce = cosine(emu, ref)
                row.update(
                    {
                        "avx2_cos_mean": float(ce.mean()),
                        "avx2_cos_min": float(ce.min()),
                        "avx2_vs_native_max_abs": float(np.abs(emu - native).max()),
                    }
                )
            rows.append(row)
    result = {
        "cpu": cpu_name(),
        "emulated_avx2": emulate,
        "rows": rows,
        "model": str(args.model),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(
        f"int8 audio encoder vs fp32 on {result['cpu']}; {len(x)} real test excerpts; speed: batch 32, 1 thread"
    )
    print(
        "| int8 model | cosine mean (this CPU) | min | int8 win/s | fp32 win/s | int8/fp32 "
        "| cosine mean (emulated AVX2) | min | max abs diff AVX2 vs this CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        avx2 = (
            f"{r['avx2_cos_mean']:.4f} | {r['avx2_cos_min']:.4f} | {r['avx2_vs_native_max_abs']:.2g}"
            if "avx2_cos_mean" in r
            else "– | – | –"
        )
        print(
            f"| {r['model']} | {r['native_cos_mean']:.4f} | {r['native_cos_min']:.4f} | {r['native_win_s']:.0f} "
            f"| {r['fp32_win_s']:.0f} | {r['native_win_s'] / r['fp32_win_s']:.2f} | {avx2} |"
        )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
