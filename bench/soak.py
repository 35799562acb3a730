"""Soak: N real-time streams for D minutes against the local stack; sessions, memory, Redis keys.

    python -m bench.soak [--streams 40] [--minutes 10] [--model models/default] [--out bench/results/soak.json]

Starts the stack (`scoreid up`, loopback, free ports, session TTL ``--ttl`` s) on the three-piece
bench library of ``bench/stack_streams.py``. Each of N client threads streams one piece's
performance in real time (0.1 s chunks, the default hop), one session per pass through the recording,
back to back until the time is up. Checked and reported:

- lost or crossed sessions: every update of a session carries that session's id and the next seq
  (0, 1, 2, ... without gaps or repeats), every session ends with its final update;
- server errors: any gRPC error a client sees;
- identification: the final top-1 of each session against the piece it played (meaningful with a
  trained model);
- memory: RSS of redis-server and each service every 5 s; growth from the end of the warm-up
  (the first ``--warmup`` s) to the end, in %;
- Redis keys of sessions (``scoreid:session:*``) after the last session ended plus the TTL: 0;
- update latency (chunk that completed a hop sent -> update received) p50/p99 per minute.
Prints a table, writes JSON (``--out``). Bounded: N <= 200 streams, the given minutes, loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import yaml

from bench.stack_streams import cli, piece_streams, setup, stack_config
from cli.client import requests
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid import contract as C
from scoreid.identify.engine import DEFAULT_HOP_S

ROOT = Path(__file__).resolve().parents[1]

HOP_S = DEFAULT_HOP_S  #: the streams' hop: the engine's default
CHUNK_S = 0.1


class Streamer:
    """Back-to-back sessions of one recording until ``deadline``; checks each session's updates."""

    def __init__(self, address: str, audio: np.ndarray, piece: str, deadline: float):
        self.address, self.audio, self.piece, self.deadline = address, audio, piece, deadline
        self.sessions = 0
        self.bad_sessions: list[str] = []  # lost/crossed: what went wrong
        self.errors: list[str] = []
        self.correct = 0
        self.latencies: list[tuple[float, float]] = []  # (wall, seconds)

    def one_session(self, ch: grpc.Channel) -> None:
        last_send = [0.0]
        audio = self.audio

        def sent() -> None:
            last_send[0] = time.perf_counter()

        sid, seq, final = "", -1, None
        reqs = requests(audio, C.SAMPLE_RATE, chunk_s=CHUNK_S, hop_s=HOP_S, on_send=sent)
        for m in pbg.IdentifyStub(ch).Stream(reqs):
            now = time.perf_counter()
            if not sid:
                sid = m.session_id
            if m.session_id != sid:
                self.bad_sessions.append(f"crossed: update of {m.session_id} in session {sid}")
            if m.seq != seq + 1:
                self.bad_sessions.append(f"lost/repeated update: seq {seq} -> {m.seq} in {sid}")
            seq = m.seq
            if m.final:
                final = m
            else:
                self.latencies.append((time.time(), now - last_send[0]))
        self.sessions += 1
        if final is None:
            self.bad_sessions.append(f"session {sid} ended without a final update")
        elif final.top and final.top[0].piece == self.piece:
            self.correct += 1

    def run(self) -> None:
        with grpc.insecure_channel(self.address) as ch:
            while time.time() + len(self.audio) / C.SAMPLE_RATE <= self.deadline:
                try:
                    self.one_session(ch)
                except grpc.RpcError as e:
                    self.errors.append(f"{e.code().name}: {e.details()}")
                    time.sleep(1.0)


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=40)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    ap.add_argument("--session-seconds", type=float, default=30.0, help="audio per session")
    ap.add_argument("--ttl", type=int, default=20, help="aggregator session TTL (s)")
    ap.add_argument("--model", type=Path, default=None, help="model dir (default: models/default if shipped)")
    ap.add_argument("--precision", default="", help="encoder precision: '' (fp32) or int8 (audio.int8.onnx)")
    ap.add_argument("--work", type=Path, default=Path("/work/data/bench/stack"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = ap.parse_args(argv)
    if not 1 <= args.streams <= 200 or not 0 < args.minutes <= 60:
        raise SystemExit("--streams must be 1..200 and --minutes 0..60")
    model = args.model
    if model is None and (ROOT / "models" / "default" / "manifest.json").is_file():
        model = ROOT / "models" / "default"
    args.work.mkdir(parents=True, exist_ok=True)
    model, lib, _wav = setup(args.work, model)
    import redis
    import soundfile as sf

    tracks = [
        (pid, sf.read(str(w), dtype="float32")[0][: int(args.session_seconds * C.SAMPLE_RATE)])
        for pid, w in piece_streams(args.work)
    ]
    cfg = stack_config(args.work, model, lib, precision=args.precision)
    cfg["aggregator"]["session_ttl_s"] = args.ttl
    cfg_path = args.work / "soak.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    state = Path(cfg["state_dir"]).resolve()
    address = cli("up", "--config", cfg_path).strip()
    t_start = time.time()
    deadline = t_start + 60 * args.minutes
    streamers = []
    try:
        procs = json.loads((state / "stack.json").read_text())["processes"]
        threads = []
        for i in range(args.streams):
            pid, audio = tracks[i % len(tracks)]
            st = Streamer(address, audio, pid, deadline)
            streamers.append(st)
            th = threading.Thread(target=st.run, daemon=True)
            threads.append(th)
            th.start()
            time.sleep(HOP_S / args.streams)
        rss: list[dict[str, float]] = []
        while any(th.is_alive() for th in threads):
            rss.append(
                {"t": round(time.time() - t_start, 1), **{p["name"]: rss_kb(p["pid"]) / 1024 for p in procs}}
            )
            time.sleep(5.0)
        t_end = time.time()
        password = (state / "secrets" / "redis.password").read_text().strip()
        r = redis.Redis(port=cfg["redis"]["port"], password=password)
        keys_at_end = sum(1 for _ in r.scan_iter(match="scoreid:session:*", count=1000))
        time.sleep(args.ttl + 5)
        keys_after_ttl = sum(1 for _ in r.scan_iter(match="scoreid:session:*", count=1000))
    finally:
        cli("down", "--config", cfg_path)
    base = next((x for x in rss if x["t"] >= args.warmup), rss[0])
    last = rss[-1]
    growth = {k: round(100.0 * (last[k] - base[k]) / base[k], 2) for k in base if k != "t" and base[k] > 0}
    per_minute = []
    lat = sorted((w - t_start, s) for st in streamers for w, s in st.latencies)
    for m in range(int(np.ceil((t_end - t_start) / 60))):
        xs = np.array([s for w, s in lat if m * 60 <= w < (m + 1) * 60]) * 1000
        if len(xs):
            per_minute.append(
                {
                    "minute": m + 1,
                    "updates": len(xs),
                    "p50_ms": round(float(np.percentile(xs, 50)), 1),
                    "p99_ms": round(float(np.percentile(xs, 99)), 1),
                }
            )
    sessions = sum(st.sessions for st in streamers)
    result = {
        "streams": args.streams,
        "minutes": args.minutes,
        "sessions": sessions,
        "lost_or_crossed_sessions": sum(len(st.bad_sessions) for st in streamers),
        "bad_session_examples": [b for st in streamers for b in st.bad_sessions][:5],
        "server_errors": sum(len(st.errors) for st in streamers),
        "error_examples": [e for st in streamers for e in st.errors][:5],
        "final_top1_correct": round(sum(st.correct for st in streamers) / max(sessions, 1), 4),
        "rss_mb_after_warmup": {k: round(v, 1) for k, v in base.items() if k != "t"},
        "rss_mb_at_end": {k: round(v, 1) for k, v in last.items() if k != "t"},
        "rss_growth_pct": growth,
        "redis_session_keys_at_end": keys_at_end,
        "redis_session_keys_after_ttl": keys_after_ttl,
        "latency_per_minute": per_minute,
        "rss_samples": rss,
        "model": str(model),
        "precision": args.precision or "fp32",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
    }
    print(
        f"soak: {args.streams} streams x {args.minutes:g} min, {sessions} sessions; lost/crossed "
        f"{result['lost_or_crossed_sessions']}, server errors {result['server_errors']}, final top-1 correct "
        f"{result['final_top1_correct']:.1%}; session keys at end {keys_at_end}, after TTL {keys_after_ttl}"
    )
    print("| process | RSS MB after warm-up | at end | growth |")
    print("|---|---:|---:|---:|")
    for k in growth:
        print(f"| {k} | {base[k]:.1f} | {last[k]:.1f} | {growth[k]:+.2f} % |")
    print("| minute | updates | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|")
    for row in per_minute:
        print(f"| {row['minute']} | {row['updates']} | {row['p50_ms']} | {row['p99_ms']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


def plot(result: dict, png: Path) -> None:  # type: ignore[type-arg]
    """RSS of each process over time, and update latency p50/p99 per minute (from a soak JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    samples = result["rss_samples"]
    for name in (k for k in samples[0] if k != "t"):
        a.plot([x["t"] / 60 for x in samples], [x[name] for x in samples], label=name)
    a.set(xlabel="minutes", ylabel="RSS (MB)", title=f"RSS, {result['streams']} streams")
    a.legend(fontsize=8)
    pm = result["latency_per_minute"]
    for q in ("p50_ms", "p99_ms"):
        b.plot([r["minute"] for r in pm], [r[q] for r in pm], marker="o", label=q[:3])
    b.set(
        xlabel="minute",
        ylabel="update latency (ms)",
        title=f"{result['sessions']} sessions, {result['date']}",
    )
    b.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
