"""The page-turner's WebSocket protocol (web/session.py, web/app.py) on the real application.

Starlette's TestClient runs the real app in-process (the engine is the real
:class:`~scoreid.identify.stream.Identifier` with a real exported model, against a built library);
the last tests start ``scoreid web`` itself (uvicorn on loopback). Checked: a stream's updates are
exactly ``scoreid identify``'s engine's; every bad frame closes the session with its code and a
reason; the limits (message size, chunk length, idle and options timeouts, sessions in all and per
client) hold; one session's frames never change another's answers; the page images are the
library's pages in the engine's coordinates.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pageprotocol import CHUNK, START, closed, stream
from PIL import Image
from starlette.testclient import TestClient

from scoreid import contract as C
from scoreid.identify.engine import EngineSettings
from scoreid.identify.stream import Identifier
from scoreid.inference import load_model
from scoreid.library.store import Library
from web import limits as L
from web.app import create_app
from web.offline_session import OfflineBackend

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "tests" / "data" / "chopin-mazurka06-2-20s.flac"


@pytest.fixture(scope="module")
def library(lib) -> Library:
    return Library.open(lib)


@pytest.fixture(scope="module")
def encoder(library):
    return load_model(library.index["model"]["dir"], expected=library.contract)


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    x, sr = sf.read(RECORDING, dtype="float32")
    assert sr == C.SAMPLE_RATE
    return x[: 8 * sr]


def client(library, encoder, **limits) -> TestClient:
    return TestClient(
        create_app(library, OfflineBackend(library, encoder, EngineSettings()), L.Limits(**limits))
    )


def start(ws) -> dict:
    hello = ws.receive_json()
    assert hello["type"] == "hello" and hello["sample_rate"] == C.SAMPLE_RATE and hello["pieces"] == 3
    ws.send_text(START)
    assert ws.receive_json()["type"] == "started"
    return hello


def offline(library, encoder, audio: np.ndarray) -> list[dict]:
    """What ``scoreid identify`` computes for ``audio`` (its hop-sized chunks), as JSON entries."""
    ident = Identifier(library, encoder, EngineSettings())
    hop = int(0.5 * C.SAMPLE_RATE)
    us = [u for s in range(0, len(audio), hop) for u in ident.push(audio[s : s + hop])] + ident.finish()
    return [u.to_json() for u in us]


ENGINE_KEYS = ("t", "identity", "confidence", "top")


def test_a_stream_gets_the_engines_answers_hop_by_hop(library, encoder, recording):
    with client(library, encoder).websocket_connect("/ws") as ws:
        hello = start(ws)
        assert hello["limits"]["max_chunk_samples"] == int(10.0 * C.SAMPLE_RATE)
        msgs = stream(ws, recording)
    updates, final = msgs[:-1], msgs[-1]
    want = offline(library, encoder, recording)
    assert [{k: m[k] for k in ENGINE_KEYS} for m in updates] == want
    assert any("page" in e for m in updates for e in m["top"])  # positions were sent
    assert updates[-1]["samples"] == len(recording)
    assert all(m["samples"] % CHUNK == 0 or m["samples"] == len(recording) for m in updates)
    assert final["type"] == "final" and final["confident"] is (final["identity"] is not None)
    assert final["voting"] == updates[-1]["voting"] > 0


BAD = {
    "not JSON": ("text", "hello", L.CLOSE_UNSUPPORTED, "not JSON"),
    "unknown type": ("text", json.dumps({"type": "play"}), L.CLOSE_UNSUPPORTED, "control frame must be"),
    "a JSON list": ("text", "[1, 2]", L.CLOSE_UNSUPPORTED, "control frame must be"),
    "wrong rate": (
        "text",
        json.dumps({"type": "start", "sample_rate": 48000, "format": "f32le"}),
        L.CLOSE_BAD_DATA,
        "at 22050 Hz",
    ),
    "wrong format": (
        "text",
        json.dumps({"type": "start", "sample_rate": 22050, "format": "s16le"}),
        L.CLOSE_BAD_DATA,
        "f32le",
    ),
    "huge text": (
        "text",
        json.dumps({"type": "start", "pad": "x" * 5000}),
        L.CLOSE_TOO_BIG,
        "control frame over",
    ),
    "ragged audio": ("bytes", b"\0" * 6, L.CLOSE_BAD_DATA, "not whole float32 samples"),
    "empty audio": ("bytes", b"", L.CLOSE_BAD_DATA, "empty audio frame"),
    "NaN audio": ("bytes", np.array([0.0, np.nan], "<f4").tobytes(), L.CLOSE_BAD_DATA, "NaN"),
    "loud audio": ("bytes", np.array([0.0, 100.0], "<f4").tobytes(), L.CLOSE_BAD_DATA, "within +-64"),
    "long chunk": (
        "bytes",
        np.zeros(10 * C.SAMPLE_RATE + 1, "<f4").tobytes(),
        L.CLOSE_TOO_BIG,
        "send smaller",
    ),
    "oversize frame": (
        "bytes",
        np.zeros((1 << 18) + 1, "<f4").tobytes(),
        L.CLOSE_TOO_BIG,
        "the limit is 1048576",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_frame_closes_the_session_with_a_reason(library, encoder, name):
    kind, payload, code, why = BAD[name]
    with client(library, encoder).websocket_connect("/ws") as ws:
        if name in ("not JSON", "unknown type", "a JSON list", "wrong rate", "wrong format", "huge text"):
            ws.receive_json()  # hello; the bad frame comes instead of the start
        else:
            start(ws)
        (ws.send_text if kind == "text" else ws.send_bytes)(payload)
        got_code, reason = closed(ws)
    assert (got_code, why in reason) == (code, True), reason
    assert len(reason.encode()) <= 123


def test_audio_before_start_is_refused(library, encoder):
    with client(library, encoder).websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_bytes(np.zeros(100, "<f4").tobytes())
        assert closed(ws) == (L.CLOSE_UNSUPPORTED, 'audio or "end" before {"type": "start"}')


def test_the_limits_are_the_services_own():
    from encoder_svc.audio_stream import MAX_SAMPLE
    from ops.config import DEFAULTS

    enc, lim = DEFAULTS["encoder"], L.Limits()
    assert L.MAX_SAMPLE == MAX_SAMPLE
    assert (
        lim.max_message_bytes,
        lim.max_chunk_seconds,
        lim.idle_timeout_s,
        lim.options_timeout_s,
        lim.max_session_s,
        lim.max_sessions_per_client,
    ) == (
        enc["max_message_bytes"],
        enc["max_chunk_seconds"],
        enc["idle_timeout_s"],
        enc["options_timeout_s"],
        enc["max_session_s"],
        enc["max_sessions_per_client"],
    )
    assert lim.max_chunk_samples * 4 <= lim.max_message_bytes  # a full chunk fits in a frame


def test_an_idle_session_is_closed(library, encoder, recording):
    with client(library, encoder, idle_timeout_s=0.5).websocket_connect("/ws") as ws:
        start(ws)
        ws.send_bytes(recording[:CHUNK].tobytes())
        t0 = time.monotonic()
        code, reason = closed(ws)
    assert code == L.CLOSE_IDLE and "nothing received for 0.5 s" in reason
    assert 0.3 < time.monotonic() - t0 < 5


def test_a_session_that_never_starts_is_closed(library, encoder):
    with client(library, encoder, options_timeout_s=0.3).websocket_connect("/ws") as ws:
        ws.receive_json()
        assert closed(ws) == (L.CLOSE_POLICY, 'no {"type": "start"} within 0.3 s')


def test_a_session_has_a_maximum_length(library, encoder, recording):
    with client(library, encoder, max_session_s=0.6).websocket_connect("/ws") as ws:
        start(ws)
        for _ in range(100):  # it keeps sending: the session still ends
            ws.send_bytes(np.zeros(CHUNK, "<f4").tobytes())
            time.sleep(0.01)
        code, reason = closed(ws)
    assert code == L.CLOSE_TOO_LONG and "limit of 0.6 s" in reason


def test_sessions_are_capped_in_all_and_per_client(library, encoder):
    c = client(library, encoder, max_sessions=2, max_sessions_per_client=1)
    with c.websocket_connect("/ws") as a:
        start(a)
        with c.websocket_connect("/ws") as b:  # the same address (TestClient's "testclient")
            code, reason = closed(b)
        assert code == L.CLOSE_BUSY and "this address has 1 sessions open" in reason
    with c.websocket_connect("/ws") as a2:  # the slot was given back
        start(a2)
    c = client(library, encoder, max_sessions=1)
    with c.websocket_connect("/ws") as a:
        start(a)
        with c.websocket_connect("/ws") as b:
            code, reason = closed(b)
        assert code == L.CLOSE_BUSY and "limit of 1 sessions" in reason


def test_sessions_are_isolated(library, encoder, recording):
    """Two sessions at once: one streams the recording, restarts, then sends a bad frame and is
    closed; the other's answers are exactly those of its own audio alone, and it goes on."""
    quiet = (0.01 * np.sin(np.arange(len(recording)) * 0.05)).astype(np.float32)
    c = client(library, encoder)
    with c.websocket_connect("/ws") as a, c.websocket_connect("/ws") as b:
        start(a)
        start(b)
        half = len(recording) // 2
        got_b = []
        for s in range(0, len(recording), CHUNK):  # interleaved frames
            a.send_bytes(recording[s : s + CHUNK].tobytes())
            b.send_bytes(quiet[s : s + CHUNK].tobytes())
            if s == (half // CHUNK) * CHUNK:
                a.send_text(START)  # a's restart
        a.send_bytes(b"\0\0\0")  # a's bad frame
        assert closed(a)[0] == L.CLOSE_BAD_DATA
        b.send_text(json.dumps({"type": "end"}))
        while True:
            m = b.receive_json()
            got_b.append(m)
            if m["type"] == "final":
                break
    want = offline(library, encoder, quiet)
    assert [{k: m[k] for k in ENGINE_KEYS} for m in got_b[:-1]] == want


def test_an_empty_library_is_said_so(library, encoder):
    with TestClient(create_app(library.subset([]), OfflineBackend(library, encoder))) as c:
        assert c.get("/api/library").json()["pieces"] == []
        with c.websocket_connect("/ws") as ws:
            code, reason = closed(ws)
    assert code == L.CLOSE_EMPTY_LIBRARY and "no pieces" in reason


def test_a_page_of_another_origin_may_not_stream(library, encoder):
    with client(library, encoder).websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
        assert closed(ws) == (L.CLOSE_POLICY, "a page of another origin may not open this stream")
    with client(library, encoder).websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        start(ws)


def test_the_page_its_library_and_its_page_images(library, encoder):
    c = client(library, encoder)
    page = c.get("/")
    assert page.status_code == 200 and "scoreid" in page.text and "/static/app.js" in page.text
    for f in ("app.js", "capture-worklet.js", "style.css"):
        assert c.get(f"/static/{f}").status_code == 200
    lib = c.get("/api/library").json()
    assert lib["sample_rate"] == C.SAMPLE_RATE and {p["id"] for p in lib["pieces"]} == set(library.piece_ids)
    chopin = next(p for p in lib["pieces"] if p["id"] == "chopin-mazurka-6-2")
    assert len(chopin["pages"]) == 2 and all(len(pg["systems"]) >= 3 for pg in chopin["pages"])
    r = c.get("/api/pieces/chopin-mazurka-6-2/pages/1")  # page 2 of the PDF, rasterised as at build
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    h, w = chopin["pages"][1]["size"]
    assert im.width == min(w, 1400) and abs(im.height / im.width - h / w) < 0.01
    ink = np.asarray(im.convert("L"), np.float32) < 128  # the systems' boxes hold the ink
    f = im.width / w
    inside = np.zeros_like(ink)
    for top, bottom, left, right in chopin["pages"][1]["systems"]:
        inside[int(top * f) : int(bottom * f) + 1, int(left * f) : int(right * f) + 1] = True
    assert ink[inside].mean() > 5 * ink[~inside].mean()
    assert c.get("/api/pieces/nope/pages/0").status_code == 404
    assert c.get("/api/pieces/chopin-mazurka-6-2/pages/9").status_code == 404
    assert c.get("/api/pieces/..%2F..%2Fetc/pages/0").status_code == 404
    health = c.get("/healthz")  # the deploy files' health checks (deploy/compose.yaml, deploy/k8s)
    assert health.status_code == 200 and health.text == "ok" and health.headers["cache-control"] == "no-store"


# ------------------------------------------------------------------ the real server


def test_scoreid_web_serves_on_loopback_and_uvicorn_refuses_huge_frames(lib):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "web", str(lib), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)  # as deploy/ checks it
        assert health.status == 200 and health.read() == b"ok"
        with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            assert json.loads(ws.recv())["type"] == "hello"
            ws.send(START)
            assert json.loads(ws.recv())["type"] == "started"
            ws.send(b"\0" * 5)
            with pytest.raises(ConnectionClosed) as e:
                ws.recv()
            assert e.value.rcvd.code == L.CLOSE_BAD_DATA and "float32" in e.value.rcvd.reason
        with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            ws.recv()
            ws.send(START)
            ws.recv()
            ws.send(b"\0" * (4 << 20))  # over uvicorn's frame limit: never reaches the app
            with pytest.raises(ConnectionClosed) as e:
                ws.recv()
            assert e.value.rcvd.code == L.CLOSE_TOO_BIG
    finally:
        proc.terminate()
        proc.wait(10)


def test_scoreid_web_errors_are_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "cli", "web", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.startswith("scoreid: error: ") and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "cli", "web", str(tmp_path), "--max-sessions", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "max_sessions must be positive" in r.stderr
