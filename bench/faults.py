"""Faults under load: kill -9 each service and Redis in turn while N streams run; measure recovery.

    python -m bench.faults [--streams 20] [--model models/default] [--between 15] [--out bench/results/faults.json]

Starts the stack (`scoreid up`, loopback, free ports) on the three-piece bench library of
``bench/stack_streams.py``, opens N real-time streams (the default hop; each plays one piece, round
robin) and, after a warm-up, kills with SIGKILL in turn the index, the aggregator, the encoder and
redis-server. Nothing is restarted by hand: the stack's supervisor (``ops.supervisor``,
as Kubernetes or compose would) starts the killed process again. The clients behave as a real client should:
on ``UNAVAILABLE`` they wait 0.5 s and reconnect with ``resume_session``, sending audio again from
the last chunk acknowledged by an update.

Checked and reported per fault:
- every error a client saw is a clean gRPC status (``UNAVAILABLE`` with a message); any other code
  counts as unclean;
- every stream's session came back (resume answered, never ``NOT_FOUND``) and the stream went on;
- tallies intact across the outage: for every piece, the first update after the resume has at
  least the last update's votes decayed over the audio time between them (votes only add), i.e.
  nothing was lost;
- the same from the server's side, exactly: ``Aggregator.Get`` (all pieces, the tally's own vote
  time) for every live session just before the kill and again at the end of the fault's window;
  every piece's later tally must be at least the earlier one decayed over the vote-time difference;
- Redis: with writes paused (``CLIENT PAUSE WRITE``), every session key is snapshotted and
  redis-server is killed; its AOF, copied while it is down, is loaded by a second redis-server on
  a private port and compared key by key with the snapshot.
Prints a table, writes JSON (``--out``). Bounded: N streams, about 4 x ``--between`` + 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import yaml

from bench.stack_streams import cli, piece_streams, setup, stack_config
from ops.grpc_server import internal_channel
from ops.stack import free_ports
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid import contract as C
from scoreid.identify.engine import DEFAULT_HOP_S

ROOT = Path(__file__).resolve().parents[1]

HOP_S = DEFAULT_HOP_S  #: the streams' hop: the engine's default
CHUNK_S = 0.1
TARGETS = ("index", "aggregator", "encoder", "redis")


class Client:
    """One real-time stream that reconnects with ``resume_session`` after UNAVAILABLE."""

    def __init__(self, address: str, audio: np.ndarray, piece: str, stop: threading.Event):
        self.address, self.audio, self.piece, self.stop = address, audio, piece, stop
        self.sid = ""
        self.updates: list[dict] = []  # {"wall", "t", "seq", "sid", "votes": {piece: votes}}
        self.errors: list[dict] = []  # {"wall", "code", "details"}
        self.resumes: list[dict] = []  # {"wall", "ok", "code"}
        self.finished = False
        self.sent = 0  # audio samples sent so far on the current connection (absolute index)
        self.acked = 0  # samples sent when the last update arrived: where a reconnect resumes
        self.token = ""  # the session's resume token

    def requests(self, start: int):  # type: ignore[no-untyped-def]
        yield pb.StreamRequest(
            options=pb.SessionOptions(
                sample_rate=C.SAMPLE_RATE,
                encoding=pb.PCM_FLOAT32,
                hop_seconds=HOP_S,
                resume_session=self.sid,
                resume_token=self.token,
            )
        )
        step = int(CHUNK_S * C.SAMPLE_RATE)
        t0 = time.monotonic()
        for i, s in enumerate(range(start, len(self.audio), step)):
            if self.stop.is_set():
                return
            delay = t0 + i * CHUNK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.sent = s + step
            yield pb.StreamRequest(audio=pb.AudioChunk(data=self.audio[s : s + step].tobytes()))

    def run(self) -> None:
        start = 0
        while not self.stop.is_set() and start < len(self.audio):
            resuming, got = bool(self.sid), False
            try:
                with grpc.insecure_channel(self.address) as ch:
                    for m in pbg.IdentifyStub(ch).Stream(self.requests(start)):
                        if resuming and not got:
                            self.resumes.append(
                                {"wall": time.time(), "ok": m.session_id == self.sid, "code": "OK"}
                            )
                        got = True
                        self.acked = self.sent
                        self.sid = m.session_id
                        self.token = m.resume_token or self.token  # sent in the session's first message
                        self.updates.append(
                            {
                                "wall": time.time(),
                                "t": m.seconds,
                                "seq": m.seq,
                                "sid": m.session_id,
                                "final": m.final,
                                "votes": {t.piece: t.votes for t in m.top},
                            }
                        )
                self.finished = True
                return
            except grpc.RpcError as e:
                code = e.code().name
                self.errors.append({"wall": time.time(), "code": code, "details": e.details() or ""})
                if resuming and not got:
                    self.resumes.append({"wall": time.time(), "ok": False, "code": code})
                if code == "NOT_FOUND":
                    return  # the session is gone: a lost session (reported)
                time.sleep(0.5 if code == "UNAVAILABLE" else 1.5)
                start = self.acked


def tcp_ready(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def snapshot(client) -> dict[str, object]:  # type: ignore[no-untyped-def]
    out: dict[str, object] = {}
    for k in client.scan_iter(match="scoreid:session:*", count=1000):
        kind = client.type(k).decode()
        out[k.decode()] = client.hgetall(k) if kind == "hash" else client.get(k) if kind == "string" else kind
    return out


def kill_redis_and_check(proc: dict, state: Path, redis_port: int) -> dict:  # type: ignore[type-arg]
    """Pause writes, snapshot, kill -9, load a copy of the AOF on a private port and compare."""
    import shutil
    import tempfile

    import redis

    password = (state / "secrets" / "redis.password").read_text().strip()  # the stack's Redis requires it
    r = redis.Redis(port=redis_port, password=password)
    r.execute_command("CLIENT", "PAUSE", 10000, "WRITE")
    before = snapshot(r)
    os.kill(proc["pid"], signal.SIGKILL)
    t_kill = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(state / "redis" / "appendonlydir", Path(tmp) / "appendonlydir")
        private = free_ports(1)[0]
        cmd = [*proc["cmd"], "--port", str(private), "--dir", tmp]  # later options win
        chk = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            if not tcp_ready(private, 30):
                raise SystemExit("bench/faults: redis-server could not load the copied AOF")
            rc = redis.Redis(port=private, password=password)
            while True:
                try:
                    if not rc.info("persistence").get("loading", 0):
                        break
                except redis.BusyLoadingError:
                    pass
                time.sleep(0.05)
            after = snapshot(rc)
        finally:
            chk.kill()
            chk.wait(10)
    same = sum(1 for k, v in before.items() if after.get(k) == v)
    return {
        "t_kill": t_kill,
        "keys_before": len(before),
        "keys_identical_after": same,
        "intact": same == len(before) and len(after) == len(before),
    }


def wait_restarted(state: Path, proc: dict, timeout: float = 60.0) -> float:  # type: ignore[type-arg]
    """Seconds until the supervisor has started ``proc`` again (its new pid in stack.json, port open)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        now = next(
            p
            for p in json.loads((state / "stack.json").read_text())["processes"]
            if p["name"] == proc["name"]
        )
        if now["pid"] != proc["pid"] and (not now.get("port") or tcp_ready(int(now["port"]), 0.2)):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit(f"bench/faults: {proc['name']} was not restarted by the supervisor within {timeout:g} s")


def server_tallies(address: str, sids: list[str], token: str) -> dict[str, tuple[float, dict[str, float]]]:
    """``Aggregator.Get`` of each session (with the stack's internal ``token``): (time of its last
    vote, {piece: tally}) for its top 50 pieces (the most Get returns)."""
    out: dict[str, tuple[float, dict[str, float]]] = {}
    with internal_channel(address, token) as ch:
        stub = pbg.AggregatorStub(ch)
        for sid in sids:
            try:
                r = stub.Get(pb.GetRequest(session_id=sid, top_k=50), timeout=5, wait_for_ready=True)
            except grpc.RpcError:
                continue
            out[sid] = (r.t_seconds, {t.piece: t.votes for t in r.top})
    return out


def server_tallies_intact(before: dict, after: dict, half_life: float) -> tuple[int, int]:  # type: ignore[type-arg]
    """(intact, checked): sessions whose every tally survived (later >= earlier x decay)."""
    ok = 0
    for sid, (t0, v0) in before.items():
        t1, v1 = after.get(sid, (t0, {}))
        decay = 2.0 ** (-max(0.0, t1 - t0) / half_life)
        ok += all(v1.get(p, 0.0) >= v * decay * (1 - 1e-9) - 1e-6 for p, v in v0.items())
    return ok, len(before)


def check_streams(clients: list[Client], t_kill: float, t_next: float, half_life: float) -> dict:  # type: ignore[type-arg]
    """Errors, resumes and tally continuity of the outage that started at ``t_kill``."""
    errs = [e for c in clients for e in c.errors if t_kill <= e["wall"] < t_next]
    interrupted = [c for c in clients if any(t_kill <= e["wall"] < t_next for e in c.errors)]
    lost = sum(
        1
        for c in interrupted
        if any(t_kill <= r["wall"] < t_next and r["code"] == "NOT_FOUND" for r in c.resumes)
    )
    resumed = sum(1 for c in interrupted if any(t_kill <= r["wall"] < t_next and r["ok"] for r in c.resumes))
    intact, checked = 0, 0
    for c in interrupted:
        before = [u for u in c.updates if u["wall"] < t_kill and not u["final"]]
        after = [
            u for u in c.updates if u["wall"] >= t_kill and u["sid"] == (before[-1]["sid"] if before else "")
        ]
        if not before or not after:
            continue
        b, a = before[-1], after[0]
        decay = 2.0 ** (-(a["t"] - b["t"]) / half_life)
        checked += 1
        intact += all(a["votes"].get(p, 0.0) >= v * decay - 1e-3 for p, v in b["votes"].items())
    codes: dict[str, int] = {}
    for e in errs:
        codes[e["code"]] = codes.get(e["code"], 0) + 1
    return {
        "streams_interrupted": len(interrupted),
        "errors_by_code": codes,
        "unclean_errors": sum(n for k, n in codes.items() if k != "UNAVAILABLE"),
        "error_example": errs[0]["details"][:160] if errs else "",
        "resumed": resumed,
        "lost_sessions": lost,
        "tallies_checked": checked,
        "tallies_intact": intact,
        "recovery_s": max(
            (
                min((u["wall"] for u in c.updates if u["wall"] > t_kill), default=float("nan")) - t_kill
                for c in interrupted
            ),
            default=0.0,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--model", type=Path, default=None, help="model dir (default: models/default if shipped)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before the first kill")
    ap.add_argument("--between", type=float, default=15.0, help="seconds between kills")
    ap.add_argument("--precision", default="", help="encoder precision: '' (fp32) or int8 (audio.int8.onnx)")
    ap.add_argument("--work", type=Path, default=Path("/work/data/bench/stack"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faults.json")
    args = ap.parse_args(argv)
    if not 1 <= args.streams <= 200:
        raise SystemExit("--streams must be 1..200")
    model = args.model
    if model is None and (ROOT / "models" / "default" / "manifest.json").is_file():
        model = ROOT / "models" / "default"
    args.work.mkdir(parents=True, exist_ok=True)
    model, lib, _wav = setup(args.work, model)
    import soundfile as sf

    tracks = [(pid, sf.read(str(w), dtype="float32")[0]) for pid, w in piece_streams(args.work)]
    cfg = stack_config(args.work, model, lib, precision=args.precision)
    cfg["aggregator"]["session_ttl_s"] = 600
    agg_address = f"127.0.0.1:{cfg['aggregator']['port']}"
    cfg_path = args.work / "faults.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    state = Path(cfg["state_dir"]).resolve()
    address = cli("up", "--config", cfg_path).strip()
    internal = (state / "secrets" / "internal.token").read_text().strip()
    total_s = args.warmup + len(TARGETS) * args.between + 10
    stop = threading.Event()
    clients = []
    for i in range(args.streams):
        pid, audio = tracks[i % len(tracks)]
        reps = int(np.ceil(total_s * C.SAMPLE_RATE / len(audio))) + 1
        clients.append(Client(address, np.tile(audio, reps)[: int(total_s * C.SAMPLE_RATE)], pid, stop))
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    faults = []
    try:
        for th in threads:
            th.start()
            time.sleep(HOP_S / len(threads))
        time.sleep(args.warmup)
        for name in TARGETS:
            procs = {p["name"]: p for p in json.loads((state / "stack.json").read_text())["processes"]}
            proc = procs[name]
            print(f"faults: kill -9 {name} (pid {proc['pid']}) under {args.streams} streams", flush=True)
            sids = sorted({c.sid for c in clients if c.sid and not c.finished})
            tallies_before = server_tallies(agg_address, sids, internal)
            if name == "redis":
                red = kill_redis_and_check(proc, state, cfg["redis"]["port"])
                t_kill = red.pop("t_kill")
            else:
                os.kill(proc["pid"], signal.SIGKILL)
                t_kill, red = time.time(), {}
            wait_restarted(state, proc)
            red["restarted_after_s"] = round(time.time() - t_kill, 2)
            time.sleep(args.between)
            ok, checked = server_tallies_intact(
                tallies_before, server_tallies(agg_address, list(tallies_before), internal), 20.0
            )
            faults.append(
                {
                    "target": name,
                    "t_kill": t_kill,
                    "server_tallies_intact": ok,
                    "server_tallies_checked": checked,
                    **red,
                }
            )
        stop.set()
        for th in threads:
            th.join(30)
    finally:
        stop.set()
        cli("down", "--config", cfg_path)
    rows = []
    for k, f in enumerate(faults):
        t_next = faults[k + 1]["t_kill"] if k + 1 < len(faults) else float("inf")
        row = {
            "target": f["target"],
            "restarted_after_s": f["restarted_after_s"],
            "server_tallies_intact": f["server_tallies_intact"],
            "server_tallies_checked": f["server_tallies_checked"],
            **check_streams(clients, f["t_kill"], t_next, 20.0),
        }
        if f["target"] == "redis":
            row["redis_keys"] = f["keys_before"]
            row["redis_keys_identical_after_restart"] = f["keys_identical_after"]
        rows.append(row)
    crossed = sum(1 for c in clients for u in c.updates if c.sid and u["sid"] != c.updates[0]["sid"])
    result = {
        "streams": args.streams,
        "faults": rows,
        "crossed_updates": crossed,
        "streams_finished": sum(c.finished for c in clients),
        "model": str(model),
        "precision": args.precision or "fp32",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
    }
    print(
        "| killed | restarted after s | streams hit | errors (codes) | unclean | resumed | lost sessions "
        "| tallies intact (client bound) | tallies intact (Aggregator.Get) | updates again after s |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        codes = ", ".join(f"{k} {n}" for k, n in r["errors_by_code"].items()) or "-"
        extra = (
            f" (redis keys {r['redis_keys_identical_after_restart']}/{r['redis_keys']} identical)"
            if r["target"] == "redis"
            else ""
        )
        print(
            f"| {r['target']} | {r['restarted_after_s']:.1f} | {r['streams_interrupted']} | {codes} | {r['unclean_errors']} | {r['resumed']} "
            f"| {r['lost_sessions']} | {r['tallies_intact']}/{r['tallies_checked']}{extra} "
            f"| {r['server_tallies_intact']}/{r['server_tallies_checked']} | {r['recovery_s']:.1f} |"
        )
    print(f"streams finished: {result['streams_finished']}/{args.streams}; crossed updates: {crossed}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
