"""Benchmark: encoder throughput (ONNX Runtime vs torch eager) against the CPU's measured FLOP/s.

``python -m bench.encoder [--threads 1] [--batches 1 8 32 128] [--rounds 3] [--min-time 0.4]
[--out bench/results/encoder.json]``

In one run, on this machine:

- the CPU's own dense throughput with ``--threads`` threads: a large sgemm (numpy and torch, the
  best of both) and a 3x3 convolution with the network's largest layer shape (torch, mkldnn);
- each encoder's FLOPs per window (2 x multiply-accumulates of every Conv2d / Linear, counted
  with forward hooks on the real modules);
- windows/s of the audio (1, 92, 84) and sheet (1, 80, 100) encoders at batch 1, 8, 32, 128 for:
  ``torch`` eager (``inference_mode``), ``ort-default`` (an ``InferenceSession`` with default
  options, what ``scoreid.inference`` used before this benchmark: a thread per core, spinning), ``ort`` (the session
  options :func:`scoreid.inference.ort_session_options` now applies) and, for the audio encoder,
  ``ort-int8`` (the shipped model's statically quantised ``audio.int8.onnx``, ``--int8``; same
  options; its GFLOP/s count the fp32 network's FLOPs, so "of peak" is an effective figure);
- the streaming front end: the incremental spectrogram's cost per hop (the engine's default) per stream at
  22.05 kHz, and with resampling from 44.1 kHz.

``--audio-archs FILTERS[:STEM] ...`` instead times only audio encoders of the given architectures
(:mod:`scoreid.models.encoders`: filters per block, stem ``full`` or ``stride2``; the first one is
the reference of the ``vs first`` column), e.g. the default beside distilled students::

    python -m bench.encoder --threads 1 --batches 64 --audio-archs 24,48,96,96 12,24,48,48 \
        12,24,48,48:stride2 --out /tmp/encoder-archs-1t.json

each randomly initialised, exported to ONNX and statically quantised to int8 (calibrated on
synthetic inputs), run by ONNX Runtime with the serving session options: windows/s at each batch
size, multiply-adds per window, and the streams that rate serves at 2 windows/s per stream (the
default hop). The JSON names the CPU and the load average at the start and the end.

The model is a randomly initialised :class:`scoreid.models.CrossModalNet` exported with
``trainer.export.export_model`` into a temporary directory (a benchmark fixture, never shipped;
the cost of inference does not depend on the weights). Every configuration is timed in
``--rounds`` interleaved rounds of at least ``--min-time`` seconds and the best round is kept
(the machine is shared, so the best round is the least disturbed one). Prints a table and
writes JSON with ``ort_vs_torch_b32`` (audio, ORT / torch windows/s at batch 32) and
``flops_fraction_b32`` (audio ORT at batch 32: achieved FLOP/s / the best measured sgemm
FLOP/s of numpy, torch and ONNX Runtime's own MatMul).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# BLAS threads must be fixed before numpy loads OpenBLAS: numpy's sgemm and the spectrogram's
# filterbank product then run on --threads threads like everything else measured here.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=1)
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(_pre.parse_known_args()[0].threads))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from scoreid import contract as C  # noqa: E402
from scoreid.identify.engine import DEFAULT_HOP_S  # noqa: E402
from scoreid.inference import ort_session_options  # noqa: E402
from scoreid.models import AudioEmbedder, CrossModalNet, SheetEmbedder  # noqa: E402
from scoreid.models.encoders import STEM, multiply_adds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def best_rate(fn: Callable[[], object], items: int, min_time: float) -> float:
    """Items per second of ``fn`` over at least ``min_time`` seconds (one warm-up call first)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time and n >= 2:
            return n * items / el


def model_flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs (2 x MACs) of the Conv2d and Linear layers of ``module`` for one input of ``shape``."""
    return 2 * multiply_adds(module, shape)


def ort_matmul(n: int, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime session of one (n, n) @ (n, n) MatMul (MLAS sgemm, the kernel ORT's convs use)."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "sgemm",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(
        model.SerializeToString(), ort_session_options(threads), providers=["CPUExecutionProvider"]
    )


def peak_flops(min_time: float, threads: int) -> dict[str, float]:
    """Measured GFLOP/s: sgemm (numpy, torch, ONNX Runtime; n = 1024) and a 96->96 3x3 conv (torch)."""
    n = 1024
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flop = 2 * n**3
    x = torch.rand(32, 96, 23, 21)
    conv = nn.Conv2d(96, 96, 3, padding=1, bias=False).eval()
    conv_flop = 2 * 32 * 96 * 23 * 21 * 96 * 9
    mm = ort_matmul(n, threads)
    with torch.inference_mode():
        out = {
            "sgemm_numpy": best_rate(lambda: a @ b, flop, min_time) / 1e9,
            "sgemm_torch": best_rate(lambda: torch.mm(ta, tb), flop, min_time) / 1e9,
            "sgemm_ort": best_rate(lambda: mm.run(None, {"a": a, "b": b}), flop, min_time) / 1e9,
            "conv3x3_torch": best_rate(lambda: conv(x), conv_flop, min_time) / 1e9,
        }
    return out


def spectrogram_cost(min_time: float) -> dict[str, float]:
    """Milliseconds per hop (the default) per stream of the incremental front end (steady state)."""
    from scoreid.audio.io import Resampler
    from scoreid.audio.processor import SequentialProcessor
    from scoreid.audio.spectrogram import OnlineSpectrogram

    rng = np.random.default_rng(0)
    res: dict[str, float] = {}
    for sr, key in (
        (C.SAMPLE_RATE, "spectrogram_ms_per_hop_22k"),
        (44100, "resample_spectrogram_ms_per_hop_44k"),
    ):
        hop = rng.normal(0, 0.1, int(sr * DEFAULT_HOP_S)).astype(np.float32)
        chain = SequentialProcessor([Resampler(sr).stream(), OnlineSpectrogram()])  # as the encoder service

        def push(chain: SequentialProcessor = chain, hop: np.ndarray = hop) -> None:
            chain.process(hop)

        res[key] = 1000.0 / best_rate(push, 1, min_time)
    return res


def parse_arch(spec: str) -> tuple[tuple[int, ...], str]:
    """``12,24,48,48:stride2`` -> ((12, 24, 48, 48), "stride2"); the stem defaults to ``full``."""
    filters, _, stem = spec.partition(":")
    return tuple(int(f) for f in filters.split(",")), stem or STEM


def architectures(args: argparse.Namespace) -> int:
    """``--audio-archs``: windows/s of each audio architecture's ONNX encoder, fp32 and int8."""
    from bench.report import cpu_name
    from trainer.export import export_onnx, quantize_int8, random_inputs

    load_start = os.getloadavg()[0]
    shape = (1, C.N_BINS, C.AUDIO_WINDOW_FRAMES)
    calib, _ = random_inputs(C.AUDIO_WINDOW_FRAMES, n=64)
    tmp = tempfile.TemporaryDirectory(prefix="scoreid-bench-archs-")
    rng = np.random.default_rng(0)
    inputs = {b: np.abs(rng.normal(0, 0.5, (b, *shape))).astype(np.float32) for b in args.batches}
    runners: dict[tuple[str, str, int], Callable[[], object]] = {}
    macs: dict[str, int] = {}
    for i, spec in enumerate(args.audio_archs):
        filters, stem = parse_arch(spec)
        net = CrossModalNet(audio_filters=filters, audio_stem=stem).eval()
        name = f"{','.join(map(str, filters))}:{stem}"
        macs[name] = multiply_adds(net.audio_encoder, shape)
        fp32 = export_onnx(
            AudioEmbedder(net).eval(), torch.zeros((2, *shape)), Path(tmp.name, f"{i}.onnx"), "spec"
        )
        int8 = quantize_int8(fp32, Path(tmp.name, f"{i}.int8.onnx"), "spec", calib)
        for prec, path in (("fp32", fp32), ("int8", int8)):
            s = ort.InferenceSession(
                str(path), ort_session_options(args.threads), providers=["CPUExecutionProvider"]
            )
            for b, x in inputs.items():
                runners[(name, prec, b)] = functools.partial(s.run, None, {"spec": x})
    rates: dict[tuple[str, str, int], float] = {}
    for r in range(args.rounds):
        for key, fn in runners.items():
            rates[key] = max(rates.get(key, 0.0), best_rate(fn, key[2], args.min_time))
        print(f"round {r + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    base = next(iter(macs))
    rows = [
        {
            "architecture": a,
            "precision": prec,
            "batch": b,
            "threads": args.threads,
            "mmac_per_window": round(macs[a] / 1e6, 1),
            "windows_per_s": round(rate, 1),
            "streams_at_2_windows_per_s": round(rate * DEFAULT_HOP_S, 1),
            "vs_first": round(rate / rates[(base, prec, b)], 2),
        }
        for (a, prec, b), rate in rates.items()
    ]
    print(
        f"\n{'architecture':<22}{'prec':<6}{'batch':>6}{'MMAC/win':>10}{'win/s':>9}{'streams':>9}"
        f"{'vs first':>9}"
    )
    for row in rows:
        print(
            f"{row['architecture']:<22}{row['precision']:<6}{row['batch']:>6}{row['mmac_per_window']:>10.1f}"
            f"{row['windows_per_s']:>9.1f}{row['streams_at_2_windows_per_s']:>9.1f}"
            f"{row['vs_first']:>8.2f}x"
        )
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "load_average": {"start": round(load_start, 1), "end": round(os.getloadavg()[0], 1)},
        "command": "python -m bench.encoder " + " ".join(args.argv),
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "weights": "random (untrained): the cost does not depend on them",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    tmp.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="threads for torch, ORT and the FLOP/s probes")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.4, help="seconds per configuration per round")
    p.add_argument("--out", type=Path, default=RESULTS / "encoder.json")
    p.add_argument(
        "--int8",
        type=Path,
        default=RESULTS.parents[1] / "models" / "default" / "audio.int8.onnx",
        help="int8 audio encoder to time as ort-int8 (skipped when the file is missing)",
    )
    p.add_argument(
        "--audio-archs",
        nargs="+",
        default=None,
        metavar="FILTERS[:STEM]",
        help="instead: time only these audio encoders (e.g. 24,48,96,96 12,24,48,48:stride2), "
        "ONNX Runtime fp32 and int8, randomly initialised",
    )
    args = p.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.audio_archs:
        return architectures(args)
    from trainer.export import export_model

    net = CrossModalNet().eval()
    tmp = tempfile.TemporaryDirectory(prefix="scoreid-bench-")
    export_model(
        net, tmp.name, {"preset": "random-init benchmark fixture"}, tensorrt=False, log=lambda s: None
    )
    shapes = {"audio": (1, C.N_BINS, C.AUDIO_WINDOW_FRAMES), "sheet": (1, C.SHEET_NET_H, C.SHEET_NET_W)}
    modules = {"audio": AudioEmbedder(net).eval(), "sheet": SheetEmbedder(net).eval()}
    inputs = {"audio": "spec", "sheet": "image"}
    flops = {m: model_flops(modules[m], shapes[m]) for m in shapes}

    def ort_default(m: str) -> ort.InferenceSession:
        # what scoreid.inference used before: default options (a thread per core, spin-waiting)
        return ort.InferenceSession(f"{tmp.name}/{m}.onnx", providers=["CPUExecutionProvider"])

    def ort_tuned(m: str) -> ort.InferenceSession:
        o = ort_session_options(args.threads)
        return ort.InferenceSession(f"{tmp.name}/{m}.onnx", o, providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    runners: dict[tuple[str, str, int], Callable[[], object]] = {}
    for m in shapes:
        sessions = {"ort-default": ort_default(m), "ort": ort_tuned(m)}
        if m == "audio" and args.int8.is_file():
            o = ort_session_options(args.threads)
            sessions["ort-int8"] = ort.InferenceSession(str(args.int8), o, providers=["CPUExecutionProvider"])
        for b in args.batches:
            x = np.abs(rng.normal(0, 0.5, (b, *shapes[m]))).astype(np.float32)
            tx = torch.from_numpy(x)
            for name, s in sessions.items():
                runners[(m, name, b)] = functools.partial(s.run, None, {inputs[m]: x})
            runners[(m, "torch", b)] = functools.partial(modules[m], tx)

    rates: dict[tuple[str, str, int], float] = {}
    peaks: dict[str, float] = {}
    with torch.inference_mode():
        for rnd in range(args.rounds):
            for key, fn in runners.items():
                rate = best_rate(fn, key[2], args.min_time)
                rates[key] = max(rates.get(key, 0.0), rate)
            for k, v in peak_flops(args.min_time, args.threads).items():
                peaks[k] = max(peaks.get(k, 0.0), v)
            print(f"round {rnd + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    spec = spectrogram_cost(args.min_time)
    peak = max(v for k, v in peaks.items() if k.startswith("sgemm"))

    rows: list[dict[str, Any]] = []
    for (m, backend, b), rate in rates.items():
        gflops = rate * flops[m] / 1e9
        rows.append(
            {
                "encoder": m,
                "backend": backend,
                "batch": b,
                "windows_per_s": round(rate, 1),
                "ms_per_window": round(1000 / rate, 3),
                "gflops": round(gflops, 2),
                "flops_fraction": round(gflops / peak, 3),
                "vs_torch": round(rate / rates[(m, "torch", b)], 2),
            }
        )
    print(
        f"\nmeasured peak ({args.threads} thread(s)): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items())
    )
    print(", ".join(f"{m}: {flops[m] / 1e6:.1f} MFLOP/window" for m in flops))
    print(
        f"\n{'encoder':<7}{'backend':<13}{'batch':>6}{'win/s':>9}{'ms/win':>8}{'GFLOP/s':>9}{'of peak':>9}{'vs torch':>9}"
    )
    for r in rows:
        print(
            f"{r['encoder']:<7}{r['backend']:<13}{r['batch']:>6}{r['windows_per_s']:>9.1f}{r['ms_per_window']:>8.2f}"
            f"{r['gflops']:>9.1f}{100 * r['flops_fraction']:>8.1f}%{r['vs_torch']:>8.2f}x"
        )
    print(
        f"\nincremental front end per {DEFAULT_HOP_S:g} s hop per stream: "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in spec.items())
    )

    b32 = 32 if 32 in args.batches else max(args.batches)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'}), shared; "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "command": "python -m bench.encoder " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "ort_vs_torch_b32": round(rates[("audio", "ort", b32)] / rates[("audio", "torch", b32)], 3),
        "flops_fraction_b32": round(rates[("audio", "ort", b32)] * flops["audio"] / 1e9 / peak, 3),
        "ort_int8_vs_ort_b32": round(rates[("audio", "ort-int8", b32)] / rates[("audio", "ort", b32)], 3)
        if ("audio", "ort-int8", b32) in rates
        else None,
        "peak_gflops": {k: round(v, 2) for k, v in peaks.items()},
        "mflops_per_window": {m: round(v / 1e6, 2) for m, v in flops.items()},
        **{k: round(v, 4) for k, v in spec.items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"\nort_vs_torch_b32 {result['ort_vs_torch_b32']}, flops_fraction_b32 {result['flops_fraction_b32']}; wrote {args.out}"
    )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
