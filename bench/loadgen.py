"""Load generator for the Identify stream: N concurrent real-time streams on loopback.

    python -m bench.loadgen --address 127.0.0.1:50051 --streams 10 20 50 --seconds 20 [--audio FILE]

For each N it opens N streams (threads, one gRPC channel each; ``--procs P`` spreads them over P
processes — one GIL cannot drive thousands of streams), sends float32 PCM in chunks of
``--chunk`` seconds paced in real time, and measures the client-observed update latency: time
from sending the chunk that completed a hop to receiving that hop's update (the last chunk sent
before the update arrived). Reports per N: updates, missed hops (expected - received), errors,
latency p50/p95/p99; prints a table and writes JSON (``--out``, default
bench/results/streams.json) with "max_streams_p99_100ms" and "p99_ms_at_200" when measured.
Bounded: at most --max-streams streams and --seconds per step; loopback addresses only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from cli.client import requests
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid import contract as C
from scoreid.identify.engine import DEFAULT_HOP_S

ROOT = Path(__file__).resolve().parents[1]

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def synthetic_audio(seconds: float, seed: int) -> np.ndarray:
    """Decaying harmonic tones (a stand-in for piano audio when no file is given)."""
    rng = np.random.default_rng(seed)
    sr, note = C.SAMPLE_RATE, 0.25
    t = np.arange(int(note * sr)) / sr
    tones = []
    for _ in range(int(math.ceil(seconds / note))):
        f = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        tones.append(0.3 * sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3)) * np.exp(-6 * t))
    return np.concatenate(tones).astype(np.float32)[: int(seconds * sr)]


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def proc_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class StreamStats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.updates = 0
        self.error = ""


def run_stream(address: str, audio: np.ndarray, chunk_s: float, hop_s: float, stats: StreamStats) -> None:
    last_send = [0.0]
    lock = threading.Lock()

    def sent() -> None:
        with lock:
            last_send[0] = time.perf_counter()

    try:
        with grpc.insecure_channel(address) as ch:
            for m in pbg.IdentifyStub(ch).Stream(
                requests(audio, C.SAMPLE_RATE, chunk_s=chunk_s, hop_s=hop_s, on_send=sent)
            ):
                now = time.perf_counter()
                stats.updates += 1
                if not m.final:
                    with lock:
                        stats.latencies.append(now - last_send[0])
    except grpc.RpcError as e:
        stats.error = f"{e.code().name}: {e.details()}"


def run_share(
    address: str, ids: list[int], n: int, seconds: float, chunk_s: float, hop_s: float, audio: np.ndarray
) -> tuple[list[float], int, list[str]]:
    """Streams ``ids`` of the step's ``n`` (threads of this process): their latencies (s), the updates
    received and the errors."""
    stats = [StreamStats() for _ in ids]
    threads = []
    for j, i in enumerate(ids):
        # stagger starts over one hop so hops do not all land at the same instant
        offset = int((i * 7919) % len(audio))
        a = np.roll(audio, -offset)[: int(seconds * C.SAMPLE_RATE)]
        th = threading.Thread(target=run_stream, args=(address, a, chunk_s, hop_s, stats[j]), daemon=True)
        threads.append(th)
        th.start()
        time.sleep(hop_s / max(len(ids), 1))
    for th in threads:
        th.join(seconds * 3 + 30)
    return (
        [x for s in stats for x in s.latencies],
        sum(s.updates for s in stats),
        [s.error for s in stats if s.error],
    )


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def step(
    address: str,
    n: int,
    seconds: float,
    chunk_s: float,
    hop_s: float,
    audio: np.ndarray,
    procs: dict[str, int] | None = None,
    workers: int = 1,
) -> dict:
    """One load step; ``procs`` (name -> pid) are sampled for CPU (% of one core over the step) and
    RSS; ``workers`` > 1 spreads the streams over that many processes (one GIL cannot drive
    thousands of streams), the load generator's CPU then counts them all."""
    procs = {**(procs or {}), "loadgen": os.getpid()}
    cpu0, t_cpu0, kids0 = {k: proc_cpu_s(p) for k, p in procs.items()}, time.monotonic(), _children_cpu_s()
    if workers <= 1:
        lat_s, received, errors = run_share(address, list(range(n)), n, seconds, chunk_s, hop_s, audio)
    else:  # P copies of this script, each driving its share (a fresh interpreter: no fork of gRPC)
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "audio.npy", audio)
            runs = []
            for k in range(workers):
                out = Path(tmp) / f"share-{k}.json"
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.loadgen",
                    "--share",
                    f"{k}/{workers}",
                    "--share-audio",
                    str(Path(tmp) / "audio.npy"),
                    "--share-out",
                    str(out),
                    "--address",
                    address,
                    "--streams",
                    str(n),
                    "--seconds",
                    str(seconds),
                    "--chunk",
                    str(chunk_s),
                    "--hop",
                    str(hop_s),
                ]
                runs.append((subprocess.Popen(cmd, cwd=ROOT), out))
            parts: list[dict[str, Any]] = []
            for proc, out in runs:
                proc.wait()
                parts.append(
                    json.loads(out.read_text())
                    if out.is_file()
                    else {"lat": [], "updates": 0, "errors": ["a load process failed"]}
                )
        lat_s = [x for part in parts for x in part["lat"]]
        received = sum(part["updates"] for part in parts)
        errors = [e for part in parts for e in part["errors"]]
    wall = time.monotonic() - t_cpu0
    cpu = {k: round(100 * (proc_cpu_s(p) - cpu0[k]) / wall, 1) for k, p in procs.items()}
    cpu["loadgen"] = round(cpu["loadgen"] + 100 * (_children_cpu_s() - kids0) / wall, 1)
    rss = {k: round(proc_rss_mb(p), 1) for k, p in procs.items()}
    lat = np.array(lat_s) * 1000
    expected = n * int(seconds / hop_s)

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if len(lat) else float("nan")

    return {
        "streams": n,
        "updates": received,
        "missed_hops": max(0, expected - received),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "wall_s": round(wall, 1),
        "cpu_pct": cpu,
        "rss_mb": rss,
        "loadgen_processes": workers,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", default="127.0.0.1:50051")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--chunk", type=float, default=0.1, help="seconds of audio per message")
    ap.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    ap.add_argument("--audio", help="audio file to stream (default: synthetic tones)")
    ap.add_argument("--max-streams", type=int, default=400, help="per load-generator process")
    ap.add_argument(
        "--procs", type=int, default=1, help="load-generator processes the streams are spread over"
    )
    ap.add_argument("--share", default="", help=argparse.SUPPRESS)  # K/P: run streams K, K+P, ... of the step
    ap.add_argument("--share-audio", default="", help=argparse.SUPPRESS)
    ap.add_argument("--share-out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "streams.json")
    ap.add_argument(
        "--pid",
        action="append",
        default=[],
        metavar="NAME=PID",
        help="a server process to report CPU and RSS for (repeatable)",
    )
    args = ap.parse_args(argv)
    if args.share:  # one load process of a --procs step: its streams, raw results to --share-out
        k, total = (int(v) for v in args.share.split("/"))
        n = args.streams[0]
        lat, updates, errors = run_share(
            args.address,
            list(range(n))[k::total],
            n,
            args.seconds,
            args.chunk,
            args.hop,
            np.load(args.share_audio),
        )
        Path(args.share_out).write_text(json.dumps({"lat": lat, "updates": updates, "errors": errors}))
        return 0
    try:
        procs = {k: int(v) for k, v in (x.split("=", 1) for x in args.pid)}
    except ValueError:
        print("loadgen: error: --pid takes NAME=PID", file=sys.stderr)
        return 2
    if args.address.rsplit(":", 1)[0] not in LOOPBACK:
        print("loadgen: error: loopback addresses only", file=sys.stderr)
        return 2
    limit = min(args.max_streams * max(args.procs, 1), 20000)
    if max(args.streams) > limit or args.seconds > 600 or not 1 <= args.procs <= 64:
        print(
            f"loadgen: error: at most {limit} streams ({args.max_streams} per process, 1-64 processes) and "
            "600 s per step",
            file=sys.stderr,
        )
        return 2
    if args.audio:
        from scoreid.audio.io import load_audio

        audio = load_audio(args.audio)
    else:
        audio = synthetic_audio(max(args.seconds, 10.0), 0)
    rows = []
    print(
        f"{'streams':>8} {'updates':>8} {'missed':>7} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    for n in args.streams:
        r = step(args.address, n, args.seconds, args.chunk, args.hop, audio, procs, args.procs)
        rows.append(r)
        print(
            f"{n:>8} {r['updates']:>8} {r['missed_hops']:>7} {r['errors']:>7} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f}"
            + "  cpu% "
            + " ".join(f"{k} {v:.0f}" for k, v in r["cpu_pct"].items())
        )
    ok = [r["streams"] for r in rows if r["p99_ms"] <= 100 and r["missed_hops"] == 0 and r["errors"] == 0]
    at200 = next((r["p99_ms"] for r in rows if r["streams"] == 200), None)
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.node() + " " + platform.machine(),
        "command": " ".join(sys.argv),
        "steps": rows,
        "max_streams_p99_100ms": max(ok) if ok else 0,
        "p99_ms_at_200": at200,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
