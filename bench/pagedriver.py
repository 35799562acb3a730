"""Drive the page-turner for real: ``scoreid web`` as a process, headless Chromium with a fake microphone.

Shared by ``tests/web/test_browser.py`` and ``bench.web_latency``. The browser is Debian's
``chromium`` (``setup.sh`` installs it) driven by Playwright's Python package with
``executable_path``: no browser is downloaded. The fake microphone plays a WAV file
(``--use-file-for-fake-audio-capture``) in real time, looping at its end; the page's timings and
what it showed are in ``window.scoreidStats`` (``web/static/app.js``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default"
MAZURKA = "Mazurka in C-sharp Minor, Op. 6, No. 2"
PID = "chopin-mazurka-6-2"


def trained_library(sheets_dir: Path, root: Path) -> Path:
    """The test sheets (three engraved pieces) with the Mazurka's title and composer, built into
    ``root/lib`` with the shipped model."""
    sheets = root / "sheets"
    shutil.copytree(sheets_dir, sheets)
    (sheets / PID / "piece.json").write_text(json.dumps({"title": MAZURKA, "composer": "Frédéric Chopin"}))
    out = root / "lib"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "library",
            "build",
            str(sheets),
            "--out",
            str(out),
            "--model",
            str(DEFAULT_MODEL),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return out


def chromium() -> str | None:
    """The system Chromium, or None."""
    for name in ("chromium", "chromium-browser"):
        exe = shutil.which(name)
        if exe:
            return exe
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def write_wav(src: Path, dst: Path, lead_s: float = 0.0, tail_s: float = 0.0) -> Path:
    """``src`` (any format soundfile reads) as 16-bit PCM WAV, with seconds of silence before and after."""
    x, sr = sf.read(src, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    x = np.concatenate([np.zeros(int(lead_s * sr), np.float32), x, np.zeros(int(tail_s * sr), np.float32)])
    sf.write(dst, x, sr, subtype="PCM_16")
    return dst


@contextmanager
def web_server(lib: Path, *args: str, timeout_s: float = 120.0) -> Iterator[str]:
    """``scoreid web LIB --port 0 ARGS`` in a child process; yields its URL, stops it afterwards."""
    cmd = [sys.executable, "-m", "cli", "web", str(lib), "--port", "0", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        url: str | None = None
        seen: list[str] = []
        assert proc.stdout is not None
        while url is None:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"scoreid web exited ({proc.wait()}): {''.join(seen)}")
            seen.append(line)
            m = re.search(r"(http://\S+/)", line)
            if m:
                url = m.group(1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"scoreid web did not start within {timeout_s} s: {''.join(seen)}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def fake_mic_page(url: str, wav: Path | None, width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A Playwright page of ``url`` in headless system Chromium whose microphone plays ``wav``
    (None: no fake device, and microphone permission denied)."""
    from playwright.sync_api import sync_playwright

    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (./setup.sh installs it)")
    args = ["--autoplay-policy=no-user-gesture-required"]
    if wav is not None:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
        ]
    else:
        args += ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.wait_for_function(
                "() => document.getElementById('status').textContent.includes('pieces')"
                " || document.getElementById('status').dataset.state === 'error'"
            )
            yield page
        finally:
            browser.close()


def stats(page: Any) -> dict[str, Any]:
    """What the page recorded (``window.scoreidStats``)."""
    return page.evaluate("() => window.scoreidStats")
