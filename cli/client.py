"""Streaming client of the Identify service: a file (or samples) in, identification updates out.

``stream_audio(address, samples, sample_rate, speed=1.0)`` sends float32 PCM chunks paced in real
time (``speed`` times faster; 0 = as fast as possible) and yields each ``Identification``;
``identification_to_json`` renders one as the JSON line ``scoreid identify`` prints. Used by
``scoreid identify --server HOST:PORT``, the tests and the load generator.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid.errors import UserError
from scoreid.identify.engine import Update

CHUNK_S = 0.1


def channel(address: str, tls_ca: str | Path | None = None, max_message_bytes: int = 4 << 20) -> grpc.Channel:
    opts = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if tls_ca:
        creds = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes())
        return grpc.secure_channel(address, creds, options=opts)
    return grpc.insecure_channel(address, options=opts)


def requests(
    samples: np.ndarray,
    sample_rate: int,
    *,
    speed: float = 1.0,
    chunk_s: float = CHUNK_S,
    library: str = "",
    hop_s: float = 0.0,
    top_k: int = 0,
    resume_session: str = "",
    resume_token: str = "",
    stop: threading.Event | None = None,
    on_send: Callable[[], None] | None = None,
) -> Iterator[pb.StreamRequest]:
    """Options first, then float32 chunks of ``chunk_s`` seconds, paced at ``speed`` x real time;
    ``on_send()`` runs as each chunk goes out (the load generators time updates from it)."""
    yield pb.StreamRequest(
        options=pb.SessionOptions(
            sample_rate=sample_rate,
            encoding=pb.PCM_FLOAT32,
            library=library,
            hop_seconds=hop_s,
            top_k=top_k,
            resume_session=resume_session,
            resume_token=resume_token,
        )
    )
    x = np.ascontiguousarray(samples, dtype="<f4")
    step = max(1, int(round(chunk_s * sample_rate)))
    t0 = time.monotonic()
    for i, s in enumerate(range(0, len(x), step)):
        if stop is not None and stop.is_set():
            return
        if speed > 0:
            due = t0 + i * chunk_s / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        msg = pb.StreamRequest(audio=pb.AudioChunk(data=x[s : s + step].tobytes()))
        if on_send is not None:
            on_send()
        yield msg


def stream_audio(
    address: str,
    samples: np.ndarray,
    sample_rate: int,
    *,
    token: str = "",
    tls_ca: str | Path | None = None,
    timeout: float | None = None,
    **kw: Any,
) -> Iterator[pb.Identification]:
    """Stream ``samples`` to the server at ``address``; yields every update (the last is final)."""
    md = [("authorization", f"Bearer {token}")] if token else None
    with channel(address, tls_ca) as ch:
        stub = pbg.IdentifyStub(ch)
        yield from stub.Stream(requests(samples, sample_rate, **kw), metadata=md, timeout=timeout)


def identification_to_dict(msg: pb.Identification, details: bool = False) -> dict[str, Any]:
    """The offline ``scoreid identify`` line (:meth:`scoreid.identify.engine.Update.to_json` of
    :meth:`~scoreid.identify.engine.Update.from_message`): {"t", "identity", "confidence", "top":
    [{piece, score, votes[, the position's keys (:meth:`scoreid.identify.position.Position.to_json`)]}][,
    "final"]}. ``details`` adds session, seq, title and stage latencies."""
    out = Update.from_message(msg).to_json(k=None, final=msg.final)
    if details:
        for entry, t in zip(out["top"], msg.top):
            entry["title"] = t.title
        out.update(
            {
                "session": msg.session_id,
                "seq": msg.seq,
                "latency_ms": {k: round(v, 3) for k, v in sorted(msg.latency_ms.items())},
            }
        )
    return out


def identification_to_json(msg: pb.Identification, details: bool = False) -> str:
    return json.dumps(identification_to_dict(msg, details))


def identify_files(
    address: str,
    paths: list[str],
    *,
    speed: float = 1.0,
    token: str = "",
    tls_ca: str | None = None,
    library: str = "",
    hop_s: float = 0.0,
    top_k: int = 0,
    final_only: bool = False,
    details: bool = False,
) -> Iterator[str]:
    """JSON lines for each file streamed to the server (the ``scoreid identify --server`` path)."""
    from scoreid.audio.io import load_audio
    from scoreid.contract import SAMPLE_RATE

    for path in paths:
        x = load_audio(path)
        try:
            for msg in stream_audio(
                address,
                x,
                SAMPLE_RATE,
                token=token,
                tls_ca=tls_ca,
                speed=speed,
                library=library,
                hop_s=hop_s,
                top_k=top_k,
            ):
                if msg.final or not final_only:
                    yield identification_to_json(msg, details)
        except grpc.RpcError as e:
            code = e.code().name if hasattr(e, "code") else "UNKNOWN"
            why = e.details() if hasattr(e, "details") else str(e)
            raise UserError(f"{address}: {code}: {why}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m cli.client HOST:PORT AUDIO... [--speed N]``: the JSON lines of ``scoreid identify``."""
    import argparse
    import sys

    from scoreid.audio.io import AudioError

    ap = argparse.ArgumentParser(
        prog="python -m cli.client", description="stream audio files to a scoreid server"
    )
    ap.add_argument("server", help="HOST:PORT printed by `scoreid up`")
    ap.add_argument("audio", nargs="+", help="audio files")
    ap.add_argument("--speed", type=float, default=1.0, help="times real time (0: as fast as possible)")
    ap.add_argument("--token", default="", help="bearer token, when the server requires one")
    ap.add_argument("--tls-ca", default=None, help="CA certificate (PEM) for a TLS server")
    ap.add_argument("--library", default="", help="library name (default: the server's)")
    ap.add_argument("--hop", type=float, default=0.0, help="seconds between updates (default: the server's)")
    ap.add_argument("--final-only", action="store_true", help="print only the final line of each file")
    ap.add_argument("--details", action="store_true", help="add session, latency per stage and titles")
    args = ap.parse_args(argv)
    if args.speed < 0:
        print("scoreid: error: --speed must be >= 0", file=sys.stderr)
        return 2
    try:
        for line in identify_files(
            args.server,
            args.audio,
            speed=args.speed,
            token=args.token,
            tls_ca=args.tls_ca,
            library=args.library,
            hop_s=args.hop,
            final_only=args.final_only,
            details=args.details,
        ):
            print(line, flush=True)
    except (UserError, AudioError) as e:
        print(f"scoreid: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
