"""End-to-end streaming benchmark: `scoreid up` on loopback, then bench/loadgen.py at rising N.

    python -m bench.stack_streams --streams 5 20 50 --seconds 20 [--model models/default]

Sets up under --work (default /work/data/bench/stack): the model (``--model``; without one, a
randomly initialised CrossModalNet exported with trainer.export — latency does not depend on the
weights, identification quality does), three engraved music21 pieces and their library
(`scoreid library build`), a performance of one piece as the streamed audio; then starts the stack,
runs the load generator (table + bench/results/streams.json) and stops the stack. Everything is
on this machine's loopback; bounded by the load generator's limits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

PIECES = ("joplin/maple_leaf_rag", "chopin/mazurka06-2", "schoenberg/opus19/movement2")


def cli(*args: object) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )
    if r.returncode != 0:
        raise SystemExit(f"scoreid {args[0]} failed: {r.stderr.strip()}")
    return r.stdout


def setup(work: Path, model: Path | None) -> tuple[Path, Path, Path]:
    import soundfile as sf

    from scoreid import contract as C
    from synthesis.demo_data import engrave_piece, notes_of, piece_id
    from synthesis.perform import PerformOptions, perform

    if model is None:
        model = work / "random-model"
        if not (model / "manifest.json").is_file():
            import torch

            from scoreid.models import CrossModalNet
            from trainer.export import export_model

            torch.manual_seed(0)
            export_model(
                CrossModalNet().eval(),
                model,
                {"preset": "random-init-benchmark"},
                tensorrt=False,
                log=lambda m: None,
            )
    sheets = work / "sheets"
    for src in PIECES:
        if not (sheets / piece_id(src) / "piece.json").is_file():
            engrave_piece(src, sheets / piece_id(src))
    lib = work / f"library-{model.name}"
    if not (lib / "library.json").is_file():
        cli("library", "build", sheets, "--out", lib, "--model", model)
    for i, src in enumerate(PIECES):  # one performance per piece (stream.wav: the first piece's)
        wav = work / ("stream.wav" if i == 0 else f"stream-{i}.wav")
        if not wav.is_file():
            perf = perform(notes_of(sheets / piece_id(src)), PerformOptions(seed=1))
            sf.write(wav, perf.audio[: 60 * C.SAMPLE_RATE], C.SAMPLE_RATE)
    return model, lib, work / "stream.wav"


def piece_streams(work: Path) -> list[tuple[str, Path]]:
    """(piece id, performance file) for each library piece, as written by :func:`setup`."""
    from synthesis.demo_data import piece_id

    return [
        (piece_id(src), work / ("stream.wav" if i == 0 else f"stream-{i}.wav"))
        for i, src in enumerate(PIECES)
    ]


def stack_config(work: Path, model: Path, lib: Path, **encoder: object) -> dict:  # type: ignore[type-arg]
    """A `scoreid up` config on free loopback ports serving ``lib`` as library "bench"."""
    from ops.stack import loopback_config

    return loopback_config(
        work / "state", model, {"bench": lib}, encoder={"max_sessions_per_client": 1000, **encoder}
    )


def stage_means(metrics_port: int) -> dict[str, dict[str, float]]:
    """Per-stage totals of the encoder's ``scoreid_stage_seconds`` histogram (count, sum s, mean ms)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    acc: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith("scoreid_stage_seconds" + suffix + "{"):
                labels, value = line[len("scoreid_stage_seconds" + suffix) :].rsplit(" ", 1)
                stage = labels.split('stage="', 1)[1].split('"', 1)[0]
                acc.setdefault(stage, {})[suffix[1:]] = float(value)
    return {
        k: {
            "count": v.get("count", 0.0),
            "sum_s": round(v.get("sum", 0.0), 3),
            "mean_ms": round(1000 * v.get("sum", 0.0) / max(v.get("count", 0.0), 1.0), 3),
        }
        for k, v in sorted(acc.items())
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[5, 20, 50])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/work/data/bench/stack"))
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--batch-workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads of the encoder")
    ap.add_argument("--precision", default="", help="encoder precision: '' (fp32) or int8 (audio.int8.onnx)")
    ap.add_argument("--chunk", type=float, default=0.1, help="seconds of audio per client message")
    ap.add_argument(
        "--backend", default="onnx", choices=("onnx", "tensorrt", "torch"), help="the encoder's backend"
    )
    ap.add_argument("--device", default="", help="encoder.device: '' (the backend's), cpu, cuda")
    ap.add_argument(
        "--loadgen-procs", type=int, default=1, help="load-generator processes (bench/loadgen.py --procs)"
    )
    ap.add_argument("--max-sessions", type=int, default=1000, help="encoder.max_sessions of the stack")
    ap.add_argument(
        "--search",
        default="auto",
        choices=("auto", "aggregator", "index"),
        help="encoder.search: where windows are searched (aggregator: in the vote call; index: Index.Search first)",
    )
    ap.add_argument(
        "--no-incremental",
        action="store_true",
        help="encoder.incremental: false (every window embedded whole; the default is the incremental encoder)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "streams.json")
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="set up --work (pieces, library, performances) and stop (bench/gpu_bundle.sh)",
    )
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    model, lib, wav = setup(args.work, args.model)
    if args.prepare_only:
        print(f"prepared {args.work}: library {lib.name}, performance {wav.name}")
        return 0
    cfg = stack_config(
        args.work,
        model,
        lib,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        batch_workers=args.batch_workers,
        threads=args.threads,
        precision=args.precision,
        backend=args.backend,
        max_sessions=max(args.max_sessions, max(args.streams)),
        device=args.device,
        search=args.search,
        incremental=not args.no_incremental,
    )
    cfg_path = args.work / "scoreid.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    address = cli("up", "--config", cfg_path).strip()
    try:
        from bench import loadgen as lg

        stack = json.loads((Path(cfg["state_dir"]) / "stack.json").read_text())
        pids = [f"--pid={p['name']}={p['pid']}" for p in stack["processes"] if p["name"] != "supervisor"]
        rc = lg.main(
            [
                "--address",
                address,
                "--streams",
                *map(str, args.streams),
                "--seconds",
                str(args.seconds),
                "--chunk",
                str(args.chunk),
                "--audio",
                str(wav),
                "--out",
                str(args.out),
                "--procs",
                str(args.loadgen_procs),
                *pids,
            ]
        )
        stages = stage_means(cfg["encoder"]["metrics_port"])
    finally:
        cli("down", "--config", cfg_path)
    res = json.loads(args.out.read_text())
    res["setup"] = {
        "model": str(model),
        "library": str(lib),
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "batch_workers": args.batch_workers,
        "threads": args.threads,
        "precision": args.precision or "fp32",
        "backend": args.backend,
        "device": args.device or "default",
        "loadgen_procs": args.loadgen_procs,
        "chunk_s": args.chunk,
        "search": args.search,
        "incremental": not args.no_incremental,
    }
    res["encoder_stages"] = stages  # summed over all steps of this run
    print(
        "encoder stages (all steps): "
        + ", ".join(f"{k} {v['mean_ms']:.2f} ms x {v['count']:.0f}" for k, v in stages.items())
    )
    args.out.write_text(json.dumps(res, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
