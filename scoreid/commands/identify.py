"""``scoreid identify LIB_DIR AUDIO...``: which piece is playing and where, streamed hop by hop.

Each file is read (any rate, stereo -> mono, resampled to the contract) and fed to the
:class:`scoreid.identify.stream.Identifier` in hop-sized chunks, exactly as a live stream would
be. With ``--json`` one JSON line per hop ``{"t", "top": [{"piece", "score", "votes", "page",
"system", "x"}, ...]}`` (top 5), then ``{"final": true, ...}`` with the full ranking; without it
a live one-line status. A file that cannot be read is reported by name and skipped; the exit
code is non-zero only when no file could be identified.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from scoreid import contract as C
from scoreid.audio.io import AudioError, load_audio
from scoreid.errors import UserError

NAME = "identify"
HELP = "identify recordings against a sheet library, streaming (JSON lines with --json)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths", type=Path, nargs="+", metavar="[LIB_DIR] AUDIO",
        help="library folder (scoreid library build), then audio files (WAV, FLAC, OGG, MP3; any rate); "
        "with --server only audio files",
    )  # fmt: skip
    p.add_argument("--server", metavar="HOST:PORT", help="stream to a running stack (scoreid up) instead")
    p.add_argument(
        "--speed", type=float, default=1.0, help="with --server: times real time (0: as fast as possible)"
    )
    p.add_argument("--token", default="", help="with --server: bearer token, when the server requires one")
    p.add_argument("--tls-ca", default=None, help="with --server: CA certificate (PEM) of a TLS server")
    p.add_argument("--json", action="store_true", help="one JSON line per hop, then a final ranking line")
    p.add_argument("--hop", type=float, default=0.5, help="seconds of audio between updates (default 0.5)")
    p.add_argument("--half-life", type=float, default=20.0, help="vote decay half-life, seconds of audio")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the library's)")
    p.add_argument("--backend", default="onnx", choices=("onnx", "torch", "tensorrt"))
    p.add_argument("--plot", type=Path, default=None, help="PNG: confidence over time + followed path")


def identify_file(ident, audio: np.ndarray, hop_s: float, emit) -> list:  # type: ignore[no-untyped-def]
    chunk = max(1, int(round(hop_s * C.SAMPLE_RATE)))
    history = []
    for s in range(0, len(audio), chunk):
        for u in ident.push(audio[s : s + chunk]):
            history.append(u)
            emit(u)
    for u in ident.finish():
        history.append(u)
        emit(u)
    return history


def run(args: argparse.Namespace) -> int:
    from scoreid.identify.stream import Identifier
    from scoreid.inference import load_model
    from scoreid.library.store import Library

    if args.hop <= 0:
        raise UserError("--hop must be positive")
    if args.server:
        return run_remote(args)
    if len(args.paths) < 2:
        raise UserError("give a library folder and at least one audio file (or --server HOST:PORT AUDIO...)")
    args.lib, args.audio = args.paths[0], args.paths[1:]
    lib = Library.open(args.lib)
    if len(lib) == 0:
        raise UserError(f"{args.lib}: the library has no pieces")
    model_dir = args.model or Path(lib.index["model"]["dir"])
    enc = load_model(model_dir, args.backend, expected=lib.contract)
    ok = 0
    for path in args.audio:
        try:
            audio = load_audio(path)
        except AudioError as e:
            print(f"scoreid: error: {e}", file=sys.stderr)
            continue
        ident = Identifier(lib, enc, hop_s=args.hop, half_life=args.half_life)
        t0 = time.perf_counter()

        def emit(u, path=path) -> None:  # type: ignore[no-untyped-def]
            if args.json:
                d = u.to_json()
                if len(args.audio) > 1:
                    d["file"] = str(path)
                print(json.dumps(d), flush=True)
            elif sys.stderr.isatty():
                print("\r" + status_line(u, lib), end="", file=sys.stderr, flush=True)

        history = identify_file(ident, audio, args.hop, emit)
        dt = time.perf_counter() - t0
        secs = len(audio) / C.SAMPLE_RATE
        if ident.n_voting == 0:
            print(f"scoreid: error: {path}: no audible sound (silence); nothing to identify", file=sys.stderr)
            continue
        ok += 1
        final = ident.snapshot(secs)
        confident = ident.confident()
        if args.json:
            d = final.to_json(k=None, final=True)
            d["confident"] = confident
            d["seconds_per_second"] = round(dt / max(secs, 1e-9), 4)
            if len(args.audio) > 1:
                d["file"] = str(path)
            print(json.dumps(d), flush=True)
        else:
            if sys.stderr.isatty():
                print(file=sys.stderr)
            print(
                f"{path}: {status_line(final, lib)} ({secs:.1f} s of audio, {secs / max(dt, 1e-9):.0f}x real time)"
            )
        if not confident:
            print(f"scoreid: warning: {path}: no confident identification (votes spread over pieces; "
                  "is it one of the library's pieces?)", file=sys.stderr)  # fmt: skip
        if args.plot:
            plot_path = (
                args.plot
                if len(args.audio) == 1
                else args.plot.with_name(f"{args.plot.stem}-{path.stem}.png")
            )
            plot_history(history, lib, plot_path, title=str(path.name))
    if ok == 0:
        raise UserError("no audio file could be identified")
    return 0


def run_remote(args: argparse.Namespace) -> int:
    """Stream each file to a running stack and print the same JSON lines as offline."""
    from scoreid.client import identify_files

    if args.speed < 0:
        raise UserError("--speed must be >= 0")
    ok = 0
    for path in args.paths:
        try:
            for line in identify_files(args.server, [str(path)], speed=args.speed, token=args.token,
                                       tls_ca=args.tls_ca, hop_s=args.hop, final_only=not args.json):  # fmt: skip
                print(line, flush=True)
            ok += 1
        except AudioError as e:
            print(f"scoreid: error: {e}", file=sys.stderr)
    if ok == 0:
        raise UserError("no audio file could be identified")
    return 0


def status_line(u, lib) -> str:  # type: ignore[no-untyped-def]
    if not u.ranking:
        return f"t={u.t:6.1f}s  (listening...)"
    pid, score, _v = u.ranking[0]
    pos = u.positions.get(pid)
    where = f"page {pos['page'] + 1}, system {pos['system'] + 1}, x {pos['x']:.0f}" if pos else ""
    return f"t={u.t:6.1f}s  {lib.title(pid)} [{pid}] {score:.0%}  {where}"


def plot_history(history: list, lib, out: Path, title: str = "") -> None:  # type: ignore[no-untyped-def]
    """Identity confidence over time and the followed path on the top piece's strip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from scoreid.library.store import piece_file

    if not history:
        return
    top = history[-1].ranking[0][0] if history[-1].ranking else None
    pieces = [pid for pid, _s, _v in history[-1].ranking[:5]]
    fig = plt.figure(figsize=(15, 8))
    a1 = fig.add_subplot(2, 3, (1, 2))
    a2 = fig.add_subplot(2, 3, (4, 5))
    a3 = fig.add_subplot(1, 3, 3)
    a3.axis("off")
    ts = [u.t for u in history]
    for pid in pieces:
        sc = [next((s for p, s, _v in u.ranking if p == pid), 0.0) for u in history]
        a1.plot(ts, sc, label=lib.title(pid)[:40])
    a1.set_xlabel("seconds of audio")
    a1.set_ylabel("share of votes")
    a1.set_ylim(0, 1)
    a1.legend(fontsize=8, loc="upper right")
    a1.set_title(f"{title}: running identity")
    if top is not None:
        strip_png = piece_file(lib.dir, top, ".png")
        xs = [u.positions[top]["x"] for u in history if top in u.positions]
        tx = [u.t for u in history if top in u.positions]
        rows = [u.positions[top] for u in history if top in u.positions]
        sx = [r["strip_x"] for r in rows]
        if strip_png.exists():
            strip = np.asarray(Image.open(strip_png))
            a2.imshow(strip, cmap="gray", aspect="auto", extent=(0, strip.shape[1], strip.shape[0], 0))
            a2b = a2.twinx()
            a2b.plot(sx, tx, "r.-", ms=3, lw=0.8)
            a2b.set_ylabel("seconds of audio", color="r")
            a2.set_xlim(0, strip.shape[1])
        else:
            a2.plot(tx, xs, "r.-")
        a2.set_title(f"followed position in {lib.title(top)} (unrolled strip)")
        a2.set_yticks([])
        if rows:
            draw_page_path(a3, lib, top, rows)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"wrote {out}", file=sys.stderr)


def draw_page_path(ax, lib, pid: str, rows: list) -> None:  # type: ignore[no-untyped-def]
    """The page where the followed path spent most hops, with the path drawn on it."""
    from scoreid.sheet.pages import PageError, load_pages
    from scoreid.sheet.systems import rotate_page

    pages = lib.pieces[pid]["pages"]
    counts = np.bincount([r["page"] for r in rows], minlength=len(pages))
    k = int(np.argmax(counts))
    pg = pages[k]
    try:
        img = rotate_page(load_pages(pg["path"])[pg["page"]].image, -pg["angle_deg"])
    except (PageError, IndexError, KeyError):
        ax.set_title(f"page {k + 1}: source page not available")
        return
    ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    on = [r for r in rows if r["page"] == k]
    xs = [r["x"] for r in on]
    ys = [(r["y0"] + r["y1"]) / 2 for r in on]
    ax.plot(xs, ys, "r-", lw=0.8, alpha=0.6)
    ax.scatter(xs, ys, c=np.arange(len(xs)), cmap="autumn", s=12, zorder=3)
    ax.set_title(f"{pg['file']} page {pg['page'] + 1}: followed path ({len(on)} hops)", fontsize=9)
