"""Benchmark: encoder windows per second of one backend, by batch size (for the GPU run).

    python -m bench.backend_windows --model MODEL_DIR [--backend tensorrt|torch] [--precision fp16]
        [--device cuda]
        [--batches 1 64 256 1024] [--seconds 3] [--out bench/results/backend_windows.json]

Loads the model with :func:`scoreid.inference.load_model` (the serving path: ``onnx`` on CPU,
``tensorrt`` plans on a GPU, ``torch`` on the CPU or ``--device cuda``), then for the audio and the sheet encoder and every batch
size runs random network inputs for at least ``--seconds`` after one warm-up call and reports
windows/s and ms per batch. Prints a table and writes JSON with the machine. The weights do not
change the speed; the architecture and the backend do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.report import cpu_name, write_result
from scoreid.inference import load_model
from scoreid.tensors import audio_input_shape, sheet_input_shape

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--backend", default="onnx", choices=("onnx", "tensorrt", "torch"))
    ap.add_argument(
        "--precision", default=None, help="the backend's precision (onnx: int8; tensorrt, torch: fp16|fp32)"
    )
    ap.add_argument("--device", default=None, help="cpu | cuda (default: the backend's)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of the onnx backend")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "backend_windows.json")
    args = ap.parse_args(argv)
    enc = load_model(
        args.model, backend=args.backend, threads=args.threads, precision=args.precision, device=args.device
    )
    rng = np.random.default_rng(0)
    shapes = {"audio": audio_input_shape(enc.contract.audio_window_frames), "sheet": sheet_input_shape()}
    rows = []
    machine = cpu_name()
    if (args.device or ("cuda" if args.backend == "tensorrt" else "cpu")).startswith("cuda"):
        import torch

        machine = f"{torch.cuda.get_device_name()} + {machine}"
    print(f"encoder windows/s, backend {args.backend} {args.precision or ''}, {machine}")
    print(f"{'encoder':>7} | {'batch':>5} | {'windows/s':>10} | {'ms/batch':>9}")
    for name, shape in shapes.items():
        fn = enc.embed_audio if name == "audio" else enc.embed_sheet
        for b in args.batches:
            x = rng.random((b, *shape), dtype=np.float32)
            fn(x)  # warm-up (plan load, allocations)
            n, t0 = 0, time.perf_counter()
            while (dt := time.perf_counter() - t0) < args.seconds:
                fn(x)
                n += 1
            rows.append(
                {
                    "encoder": name,
                    "batch": b,
                    "windows_per_s": round(n * b / dt, 1),
                    "ms_per_batch": round(1000 * dt / n, 3),
                }
            )
            print(f"{name:>7} | {b:>5} | {n * b / dt:>10.1f} | {1000 * dt / n:>9.3f}", flush=True)
    write_result(
        args.out,
        {
            "model": str(args.model),
            "backend": args.backend,
            "precision": args.precision,
            "device": args.device,
            "machine": machine,
            "rows": rows,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
