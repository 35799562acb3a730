"""``scoreid identify LIB_DIR AUDIO...``: which piece is playing and where, streamed hop by hop.

Each file is read (any rate, stereo -> mono, resampled to the contract) and fed to the
:class:`scoreid.identify.stream.Identifier` in hop-sized chunks, exactly as a live stream would
be. With ``--json`` one JSON line per hop (:meth:`scoreid.identify.engine.Update.to_json`)::

    {"t", "identity", "confidence", "top": [{"piece", "score", "votes", <position>}, ...]}

(the top 5; ``<position>``, for a followed piece: ``"page", "system", "x", "file", "file_page",
"show_page", "band"``, :meth:`scoreid.identify.position.Position.to_json`), then a final line with
the full ranking and ``"final": true``, ``"confident"`` and ``"seconds_per_second"`` (with several
audio files each line also names its ``"file"``); without ``--json`` a live one-line status. A
file that cannot be read is reported by name and skipped; the exit code is non-zero only when no
file could be identified.
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
from scoreid.identify.engine import DEFAULT_HOP_S, EngineSettings
from scoreid.identify.tally import DEFAULT_HALF_LIFE_S

NAME = "identify"
HELP = "identify recordings against a sheet library, streaming (JSON lines with --json)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="[LIB_DIR] AUDIO",
        help="library folder (scoreid library build), then audio files (WAV, FLAC, OGG, MP3; any rate); "
        "with --server only audio files",
    )
    p.add_argument("--server", metavar="HOST:PORT", help="stream to a running stack (scoreid up) instead")
    p.add_argument(
        "--speed", type=float, default=1.0, help="with --server: times real time (0: as fast as possible)"
    )
    p.add_argument("--token", default="", help="with --server: bearer token, when the server requires one")
    p.add_argument("--tls-ca", default=None, help="with --server: CA certificate (PEM) of a TLS server")
    p.add_argument("--json", action="store_true", help="one JSON line per hop, then a final ranking line")
    p.add_argument(
        "--hop",
        type=float,
        default=DEFAULT_HOP_S,
        help=f"seconds of audio between updates (default {DEFAULT_HOP_S:g})",
    )
    p.add_argument(
        "--half-life",
        type=float,
        default=DEFAULT_HALF_LIFE_S,
        help=f"vote decay half-life, seconds of audio (default {DEFAULT_HALF_LIFE_S:g})",
    )
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
    if args.plot:
        from cli.commands.outputs import output_file

        output_file(args.plot, ".png", "--plot")
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
        ident = Identifier(lib, enc, EngineSettings(hop_s=args.hop, half_life=args.half_life))
        t0 = time.perf_counter()
        held: list[str] = []  # JSON lines of the silent start, printed once sound arrives

        def emit(u, path=path, held=held, ident=ident) -> None:  # type: ignore[no-untyped-def]
            if args.json:
                d = u.to_json()
                if len(args.audio) > 1:
                    d["file"] = str(path)
                held.append(json.dumps(d))
                if ident.n_voting:
                    print("\n".join(held), flush=True)
                    held.clear()
            elif sys.stderr.isatty():
                print("\r" + status_line(u, lib), end="", file=sys.stderr, flush=True)

        history = identify_file(ident, audio, args.hop, emit)
        dt = time.perf_counter() - t0
        secs = len(audio) / C.SAMPLE_RATE
        if ident.n_voting == 0:
            if sys.stderr.isatty() and not args.json:
                print(file=sys.stderr)
            print(f"scoreid: error: {path}: no audible sound (silence); nothing to identify", file=sys.stderr)
            continue
        ok += 1
        final = ident.snapshot(secs)
        confident = final.identity is not None
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
            print(
                f"scoreid: warning: {path}: unknown: no piece identified (votes spread over pieces, or "
                "a stream that does not follow one piece; is it in the library?)",
                file=sys.stderr,
            )
        if args.plot:
            plot_path = (
                args.plot
                if len(args.audio) == 1
                else args.plot.with_name(f"{args.plot.stem}-{path.stem}.png")
            )
            plot_history(history, lib, plot_path, title=str(path.name))
            print(f"wrote {plot_path}", file=sys.stderr)
    if ok == 0:  # every file's reason is printed above: only the exit code is left to give
        return 2
    return 0


def run_remote(args: argparse.Namespace) -> int:
    """Stream each file to a running stack and print the same JSON lines as offline."""
    from cli.client import identify_files

    if args.speed < 0:
        raise UserError("--speed must be >= 0")
    ok = 0
    for path in args.paths:
        try:
            for line in identify_files(
                args.server,
                [str(path)],
                speed=args.speed,
                token=args.token,
                tls_ca=args.tls_ca,
                hop_s=args.hop,
                final_only=not args.json,
            ):
                print(line, flush=True)
            ok += 1
        except AudioError as e:
            print(f"scoreid: error: {e}", file=sys.stderr)
    if ok == 0:  # every file's reason is printed above
        return 2
    return 0


def status_line(u, lib) -> str:  # type: ignore[no-untyped-def]
    if not u.ranking:
        return f"t={u.t:6.1f}s  (listening...)"
    pid, score, _v = u.ranking[0]
    pos = u.positions.get(pid)
    where = f"page {pos.page + 1}, system {pos.system + 1}, x {pos.x:.0f}" if pos else ""
    if u.identity:
        return f"t={u.t:6.1f}s  {lib.title(pid)} [{pid}] {score:.0%} (p {u.confidence:.2f})  {where}"
    return f"t={u.t:6.1f}s  unknown; top: {lib.title(pid)} [{pid}] {score:.0%}  {where}"


# The plot (running identity, the followed path on the strip and on every visited page) lives in
# its own module; ``plot_history`` stays importable from here (scoreid demo uses it).
from cli.commands.plot_identify import plot_history  # noqa: E402
