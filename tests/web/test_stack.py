"""The page-turner bridged to a running stack (web/stack_session.py, ``scoreid web --stack``,
``scoreid up --web``): one real ``scoreid up --web`` stack — redis-server, the index, aggregator
and encoder processes, the supervisor and the page's own process — with the shipped model and the
test sheets, for the whole module.

Over a real WebSocket (Starlette's TestClient running the real application with the stack
backend, whose sessions are real ``Identify.Stream`` calls to that stack): the Mazurka clip gets
the same answers as from the engine in one process — hop by hop, identity, ranking, positions,
silence and voting counts — and the Mazurka is named first; a bad frame closes only its own
session, and two sessions at once are isolated; a stack that is down, at its session cap or that
times a stream out is said so with a close code and a reason. ``scoreid web --stack`` serves the
stack's library on the command line; the page served by ``scoreid up --web`` names the Mazurka in
a real browser (Debian's chromium, :mod:`bench.pagedriver`); the supervisor keeps it up and ``scoreid
down`` stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from pageprotocol import CHUNK, END, START, closed, stream, until_final
from starlette.testclient import TestClient
from svc_helpers import cli

from bench.pagedriver import (
    DEFAULT_MODEL,
    MAZURKA,
    PID,
    chromium,
    fake_mic_page,
    stats,
    trained_library,
    write_wav,
)
from ops.stack import free_ports, loopback_config, read_stack
from scoreid import contract as C
from scoreid.inference import load_model
from scoreid.library.store import Library
from web import limits as L
from web.app import create_app
from web.offline_session import OfflineBackend
from web.stack_session import StackBackend
from web.stack_target import StackTarget, running_config, stack_target

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "tests" / "data" / "chopin-mazurka06-2-20s.flac"
STACK_IDLE_S = 5.0  #: the stack's idle timeout (the page's own is longer in the TestClient tests)
#: the stack's sessions per client: every session of this machine is one client (a restart holds
#: two streams for a moment: the cancelled one until the stack has seen it go)
STACK_PER_CLIENT = 3

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL / "manifest.json").is_file(), reason="needs the shipped model"
)


@dataclass
class Stack:
    address: str
    web: str  #: the URL of the page `scoreid up --web` serves
    config: Path
    state: Path
    library: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sheets_dir) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack-web")
    lib = trained_library(sheets_dir, root)
    token = root / "client.token"  # the stack requires a client token: the page's sessions send it
    token.write_text("web-test-token-0123456789\n")
    token.chmod(0o600)
    cfg = loopback_config(
        root / "state",
        DEFAULT_MODEL,
        {"test": lib},
        aggregator={"session_ttl_s": 30},
        encoder={
            "max_wait_ms": 3.0,
            "idle_timeout_s": STACK_IDLE_S,
            "token_file": str(token),
            "max_sessions_per_client": STACK_PER_CLIENT,
        },
    )
    path = root / "scoreid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    up = cli("up", "--config", path, "--web", "--web-port", "0")
    assert up.returncode == 0, up.stderr
    web = json.loads(up.stderr.strip().splitlines()[-1])["web"]
    try:
        yield Stack(up.stdout.strip(), web, path, root / "state", lib)
    finally:
        cli("down", "--config", path)  # the last test stops it already


@pytest.fixture(scope="module")
def library(stack) -> Library:
    return Library.open(stack.library)


@pytest.fixture(scope="module")
def encoder(library):
    return load_model(DEFAULT_MODEL, expected=library.contract)


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    x, sr = sf.read(RECORDING, dtype="float32")
    assert sr == C.SAMPLE_RATE
    return x


def stack_free(stack: Stack, timeout: float = 10.0) -> None:
    """Wait until the stack holds no session (the encoder's ``scoreid_active_sessions``): the
    sessions of a test closed before the next test counts on the per-client cap."""
    url = read_stack(stack.state)["metrics"]["encoder"]  # type: ignore[index]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        active = [ln.split()[-1] for ln in text.splitlines() if ln.startswith("scoreid_active_sessions{")]
        if all(float(v) == 0 for v in active):  # no line: no session yet
            return
        time.sleep(0.05)
    raise AssertionError("the stack still holds sessions")


def bridged(stack: Stack, library: Library, **limits) -> TestClient:
    """The application with the stack backend, configured as ``scoreid web --stack`` does it."""
    stack_free(stack)
    target = stack_target(stack.address, running_config(stack.address, stack.config))
    return TestClient(create_app(library, StackBackend(target), L.Limits(**limits)))


def start(ws) -> dict:
    hello = ws.receive_json()
    assert hello["type"] == "hello" and hello["pieces"] == 3 and hello["hop_s"] == 0.5
    ws.send_text(START)
    assert ws.receive_json()["type"] == "started"
    return hello


def test_the_stack_names_the_mazurka_with_the_answers_of_the_engine_in_one_process(
    stack, library, encoder, recording
):
    """Parity: the same clip through the stack and through the engine in this process gives the
    same messages hop by hop (every field: the answer, its positions, silence, voting, samples),
    the same identity and the Mazurka first."""
    clip = np.concatenate([np.zeros(C.SAMPLE_RATE, np.float32), recording])  # 1 s of silence first
    with bridged(stack, library).websocket_connect("/ws") as ws:
        start(ws)
        online = stream(ws, clip)
    with TestClient(create_app(library, OfflineBackend(library, encoder))).websocket_connect("/ws") as ws:
        start(ws)
        offline = stream(ws, clip)
    on_updates, on_final = online[:-1], online[-1]
    off_updates, off_final = offline[:-1], offline[-1]
    # the stack's last hop is its final answer; offline, the last hop is an update, then the final
    assert len(off_updates) - 1 <= len(on_updates) <= len(off_updates)
    assert on_updates == off_updates[: len(on_updates)]
    assert on_updates[0]["silent"] and on_updates[0]["voting"] == 0 and on_updates[-1]["voting"] > 30
    assert any("page" in e for m in on_updates for e in m["top"])  # positions were compared
    assert on_final["type"] == "final" and on_final["samples"] == len(clip)
    assert (on_final["identity"], on_final["confident"]) == (off_final["identity"], off_final["confident"])
    assert on_final["top"][0]["piece"] == off_final["top"][0]["piece"] == PID
    assert on_final["voting"] == off_final["voting"]


def test_a_bad_frame_closes_only_its_own_session_and_sessions_are_isolated(stack, library, recording):
    """Two bridged sessions at once: one streams the recording, restarts, then sends a ragged frame
    and is closed (1007, the offline reason); the other's answers are those of its own audio
    alone — as its own session streaming it afterwards — and it goes on to its final answer."""
    quiet = (0.01 * np.sin(np.arange(8 * C.SAMPLE_RATE) * 0.05)).astype(np.float32)
    c = bridged(stack, library)
    with c.websocket_connect("/ws") as a, c.websocket_connect("/ws") as b:
        start(a)
        start(b)
        for s in range(0, len(quiet), CHUNK):  # interleaved frames
            a.send_bytes(recording[s : s + CHUNK].tobytes())
            b.send_bytes(quiet[s : s + CHUNK].tobytes())
            if s == 40 * CHUNK:
                a.send_text(START)  # a's restart: a new stream of the stack
        a.send_bytes(b"\0\0\0")  # a's bad frame
        code, reason = closed(a)
        assert (code, "not whole float32 samples" in reason) == (L.CLOSE_BAD_DATA, True), reason
        b.send_text(END)
        got_b = until_final(b)
    with bridged(stack, library).websocket_connect("/ws") as alone:
        start(alone)
        want_b = stream(alone, quiet)
    assert got_b == want_b and len(got_b) > 10


def test_a_stack_that_is_down_or_refuses_the_server_is_said_so(library, stack):
    """Nothing listens at the address: the session closes with 4003 before it starts; a wrong
    token: 1011, saying so."""
    (port,) = free_ports(1)
    for target, want, why in (
        (
            StackTarget(f"127.0.0.1:{port}", "test", stack.library, 0.5),
            L.CLOSE_UNREACHABLE,
            "stack is unreachable",
        ),
        (
            StackTarget(stack.address, "test", stack.library, 0.5, token="wrong-token-0123456789"),
            L.CLOSE_ERROR,
            "the stack refused this server's token",
        ),
    ):
        with TestClient(create_app(library, StackBackend(target))).websocket_connect("/ws") as ws:
            ws.receive_json()
            ws.send_text(START)
            code, reason = closed(ws)
        assert code == want and why in reason, reason


def test_the_target_takes_the_stacks_credentials_and_library(stack, tmp_path):
    """What ``scoreid web --stack`` reads: the running stack's configuration (found by its
    state_dir), its client token (a named ``web`` client first), its TLS certificate as the CA."""
    cfg = running_config(stack.address, stack.config)
    target = stack_target(stack.address, cfg)
    assert (target.library, target.library_dir, target.hop_s) == ("test", stack.library, 0.5)
    assert target.token == "web-test-token-0123456789" and target.tls_ca is None
    clients = tmp_path / "clients.yaml"
    clients.write_text("page: page-token-0123456789\nweb: web-client-token-0123456\n")
    clients.chmod(0o600)
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    enc = {**cfg["encoder"], "clients_file": str(clients), "tls_cert": str(cert)}
    named = stack_target(stack.address, {**cfg, "encoder": enc})
    assert named.token == "web-client-token-0123456" and named.tls_ca == cert.read_bytes()


def test_the_stacks_session_cap_and_timeout_are_said_so(stack, library, recording):
    """Beyond the stack's sessions per client: 1013 with the stack's reason; a stream the stack
    times out (its idle timeout, shorter here than the page's own): 4000 with its reason."""
    c = bridged(stack, library, idle_timeout_s=60.0)
    with contextlib.ExitStack() as opened:
        held = [opened.enter_context(c.websocket_connect("/ws")) for _ in range(STACK_PER_CLIENT)]
        for ws in held:
            start(ws)
            ws.send_bytes(recording[:CHUNK].tobytes())
        t0 = time.monotonic()
        extra = opened.enter_context(c.websocket_connect("/ws"))
        extra.receive_json()
        extra.send_text(START)  # the web server admits it, the stack refuses it
        code, reason = closed(extra)
        assert code == L.CLOSE_BUSY and reason.startswith("the stack is busy: ") and "sessions" in reason, (
            reason
        )
        for ws in held:  # they send nothing more: the stack ends their streams
            code, reason = closed(ws)
            assert code == L.CLOSE_IDLE and "the stack closed the stream: no audio for 5 s" in reason, reason
        assert STACK_IDLE_S - 1 < time.monotonic() - t0 < STACK_IDLE_S + 10


def test_scoreid_web_bridges_to_the_stack_on_the_command_line(stack, recording):
    from websockets.sync.client import connect

    stack_free(stack)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "web",
            "--stack",
            stack.address,
            "--config",
            str(stack.config),
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert (
            "library 'test'" in line and f"stack at {stack.address}" in line and "http://127.0.0.1:" in line
        )
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        lib = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/library", timeout=10).read())
        assert {p["id"] for p in lib["pieces"]} == {PID, "joplin-maple-leaf", "schoenberg-19-2"}
        png = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/pieces/{PID}/pages/1", timeout=30)
        assert png.headers["content-type"] == "image/png"
        with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            hello = json.loads(ws.recv())
            assert hello["limits"]["idle_timeout_s"] == STACK_IDLE_S  # the stack's limits
            ws.send(START)
            assert json.loads(ws.recv())["type"] == "started"
            for s in range(0, 3 * C.SAMPLE_RATE, CHUNK):
                ws.send(recording[s : s + CHUNK].tobytes())
            ws.send(END)
            msgs = []
            while not msgs or msgs[-1]["type"] != "final":
                msgs.append(json.loads(ws.recv()))
        assert [m["type"] for m in msgs] == ["update"] * (len(msgs) - 1) + ["final"] and len(msgs) >= 5
    finally:
        proc.terminate()
        proc.wait(10)
    for args, why in (
        (["web", "--stack", stack.address, str(stack.library)], "LIB_DIR is the stack's"),
        (
            ["web", "--stack", stack.address, "--config", stack.config, "--library", "nope"],
            "no library 'nope'",
        ),
        (["web", "--config", stack.config], "--config goes with --stack"),
        (["up", "--web-port", "0"], "go with --web"),
    ):
        r = cli(*args, timeout=60)
        assert r.returncode == 2 and r.stderr.startswith("scoreid: error: ") and why in r.stderr, r.stderr


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (./setup.sh installs it)")
def test_the_page_served_beside_the_stack_names_the_mazurka(stack, tmp_path):
    """``scoreid up --web``'s page in a real browser: the microphone plays the clip; the page names
    the Mazurka first and shows its pages, each the one the position says, with every update back."""
    stack_free(stack)
    wav = write_wav(RECORDING, tmp_path / "mazurka.wav")
    with fake_mic_page(stack.web, wav) as page:
        page.click("#listen")
        page.wait_for_function("() => window.scoreidStats.latencies.some(l => l.t >= 15)", timeout=60_000)
        s = stats(page)
        top = page.text_content("#ranking li.top .name")
        title = page.text_content("#score-title")
    assert top == MAZURKA and title.startswith(MAZURKA)
    assert set(s["identities"]) <= {PID}
    follow = [f for f in s["follow"] if f["piece"] == PID]
    assert len(follow) >= 10 and all(f["shown"] == f["show_page"] for f in follow)
    assert len(s["latencies"]) >= 25 and np.median([x["recv_ms"] for x in s["latencies"]]) < 1000
    assert not s["closes"] and not s["errors"]


def test_the_page_beside_the_stack_stays_up_and_down_stops_it(stack):
    """Killed, the page's process is started again by the supervisor on the same port; ``scoreid
    down`` stops it with the rest."""
    port = int(stack.web.rsplit(":", 1)[1].strip("/"))
    web = next(p for p in read_stack(stack.state)["processes"] if p["name"] == "web")  # type: ignore[index]
    os.kill(web["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        again = next(p for p in read_stack(stack.state)["processes"] if p["name"] == "web")  # type: ignore[index]
        try:
            if again["pid"] != web["pid"]:
                urllib.request.urlopen(stack.web, timeout=2).read()
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the page was not started again"
        time.sleep(0.2)
    down = cli("down", "--config", stack.config)
    assert down.returncode == 0 and "web" in down.stdout, down.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
