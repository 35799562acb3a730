"""Benchmark: the page-turner's end-to-end latency, from a chunk leaving the browser to the cursor moving.

``python -m bench.web_latency [--lib DIR] [--seconds 40] [--screenshot docs/web-page.png]``

Starts ``scoreid web`` (a real uvicorn server, the shipped model) on the demo library (``scoreid
demo`` builds it once), opens the page in headless Debian Chromium whose fake microphone plays the
demo's held-out performance of its piece (Chopin's Mazurka op. 6 no. 2: csound soundfont, 1.25x
with a tempo curve, room and noise; the same as ``scoreid demo``), presses Listen and plays
``--seconds`` of it in real time. The page times every 0.1-s chunk it sends (its sample count ->
``performance.now()``); each update names the samples the server had when it made it, so the page
knows which chunk completed the hop: ``recv`` is that chunk leaving the browser -> the update
arriving, ``cursor`` -> the next animation frame after the cursor was moved (what the musician
sees). Prints a table (median, p90, p99, max) and writes JSON; with ``--screenshot`` also saves the
page once the piece is identified and its page has turned (the README's picture).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.pagedriver import chromium, fake_mic_page, stats, web_server
from bench.report import cpu_name, write_result
from scoreid import contract as C

ROOT = Path(__file__).resolve().parents[1]

DEMO_PIECE_ID = "chopin-mazurka06-2"


def demo_library(model: Path) -> Path | None:
    from ops.stack import demo_library as lib_of
    from scoreid.errors import UserError

    try:
        return lib_of(model)
    except UserError:
        return None


def demo_performance(lib: Path, seconds: float, out: Path) -> Path:
    """The demo's performance of its piece (``scoreid demo``'s: tempo 1.25, seed 7) as WAV."""
    from synthesis.demo_data import notes_of, shifted_performance

    index = json.loads((lib / "library.json").read_text())
    sheets = Path(index["pieces"][DEMO_PIECE_ID]["source"])
    perf = shifted_performance(notes_of(sheets), tempo_factor=1.25, seed=7)
    sf.write(out, perf.audio[: int(seconds * C.SAMPLE_RATE)], C.SAMPLE_RATE, subtype="PCM_16")
    return out


def summary(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, np.float64)
    return {
        "n": int(len(a)),
        "median": round(float(np.median(a)), 2),
        "p90": round(float(np.percentile(a, 90)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--lib", type=Path, default=None, help="library (default: the demo library of `scoreid demo`)"
    )
    ap.add_argument(
        "--seconds", type=float, default=40.0, help="seconds of the performance to play (default 40)"
    )
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument(
        "--screenshot", type=Path, default=None, help="PNG of the page after identification and a page turn"
    )
    ap.add_argument(
        "--shot-at", type=float, default=36.0, help="earliest audio time of the screenshot (default 36 s)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web_latency.json")
    args = ap.parse_args(argv)
    if chromium() is None:
        print("web_latency: needs Debian's chromium (./setup.sh installs it)", file=sys.stderr)
        return 2
    lib = args.lib or demo_library(args.model)
    if lib is None:
        print("web_latency: no demo library; run `.venv/bin/scoreid demo` once first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        wav = demo_performance(lib, args.seconds + 2.0, Path(tmp) / "performance.wav")
        with web_server(lib, "--model", str(args.model)) as url, fake_mic_page(url, wav) as page:
            page.click("#listen")
            shot = None
            deadline = time.monotonic() + args.seconds + 60
            while time.monotonic() < deadline:
                s = stats(page)
                t = s["latencies"][-1]["t"] if s["latencies"] else 0.0
                if args.screenshot and shot is None and t >= args.shot_at and s["identities"]:
                    if page.get_attribute("#page-index", "data-page") not in (None, "", "0"):
                        time.sleep(0.8)  # the cursor's transition and the scroll settle
                        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(args.screenshot))
                        shot = t
                if t >= args.seconds:
                    break
                time.sleep(0.25)
            s = stats(page)
    lat = [x for x in s["latencies"] if x["t"] <= args.seconds]
    if not lat:
        print("web_latency: the page received no updates", file=sys.stderr)
        return 1
    recv, paint = summary([x["recv_ms"] for x in lat]), summary([x["paint_ms"] for x in lat])
    result = {
        "what": "chunk sent by the browser -> update received (recv) / cursor moved (cursor), ms",
        "recv_ms": recv,
        "cursor_ms": paint,
        "seconds": args.seconds,
        "chunk_s": 0.1,
        "identified": s["identities"],
        "pages_shown": s["pagesShown"],
        "screenshot_at_s": shot,
        "library": str(lib),
        "browser": "Debian chromium, headless, fake microphone",
        "cpu": cpu_name(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(f"page-turner latency over {recv['n']} updates ({args.seconds:g} s of audio) on {result['cpu']}")
    print("| chunk sent -> | median | p90 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for name, r in (("update received", recv), ("cursor moved", paint)):
        print(
            f"| {name} | {r['median']:.1f} ms | {r['p90']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.1f} ms |"
        )
    if args.screenshot:
        print(
            f"screenshot: {args.screenshot if shot is not None else 'not taken (no identity and page turn)'}"
            + (f" at {shot:.1f} s" if shot is not None else "")
        )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
