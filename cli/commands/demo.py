"""``scoreid demo``: the main job for a newcomer, on the shipped model and a demo library.

1. Builds (once; cached) a sheet library of ~30 pieces from the music21 corpus: keyboard works,
   plus Bach chorales reduced to piano scores, engraved with Verovio in a font not used in
   training and written as page images; the library is built from those pixels like any user's.
2. Synthesises a performance of one of them under held-out conditions: the ``shifted`` soundfont
   (csound GM bank), a tempo (1.25x) and tempo curve outside the training range, a room and noise.
3. Streams it hop by hop through the same incremental code the services use, printing the running
   identity and score position, and writes a plot (confidence over time + followed path).
   With ``--services`` the same performance goes through the real stack instead: redis-server and
   the index, aggregator and encoder services started on free loopback ports (a private state
   folder, stopped afterwards), streamed by the gRPC client at ``--speed`` x real time.

Without a trained model in ``models/default`` it says so and shows only the front end (the
spectrogram of the streamed performance): it never prints an identity it did not compute.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ops.cache import demo_cache
from scoreid import contract as C
from scoreid.errors import UserError
from scoreid.identify.engine import DEFAULT_HOP_S, EngineSettings

NAME = "demo"
HELP = "run the main job: build a demo library, synthesise a performance, identify it while streaming"

DEMO_PIECE = "chopin/mazurka06-2"
MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "default"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="folder for the plot (default demo-out/)"
    )
    p.add_argument(
        "--piece", default=DEMO_PIECE, help=f"music21 corpus piece to perform (default {DEMO_PIECE})"
    )
    p.add_argument("--pieces", type=int, default=30, help="library size (default 30)")
    p.add_argument("--seconds", type=float, default=40.0, help="seconds of the performance to stream")
    p.add_argument(
        "--hop",
        type=float,
        default=DEFAULT_HOP_S,
        help=f"seconds of audio per streamed chunk (default {DEFAULT_HOP_S:g})",
    )
    p.add_argument("--cache", type=Path, default=None, help=f"cache folder (default {demo_cache()})")
    p.add_argument("--model", type=Path, default=MODEL_DIR, help="model directory (default models/default)")
    p.add_argument(
        "--services", action="store_true", help="run through the services (`scoreid up`) on loopback"
    )
    p.add_argument(
        "--speed",
        type=float,
        default=4.0,
        help="with --services: stream at N x real time (0: as fast as possible; default 4)",
    )


def run(args: argparse.Namespace) -> int:
    if args.hop <= 0 or args.seconds <= 0:
        raise UserError("--hop and --seconds must be positive")
    if args.speed < 0:
        raise UserError("--speed must be >= 0")
    from synthesis.demo_data import DEMO_PIECES

    pieces = list(DEMO_PIECES[: max(1, args.pieces)])
    if args.piece not in pieces:
        pieces = [args.piece, *pieces[: max(0, args.pieces - 1)]]
    if not (Path(args.model) / "manifest.json").exists():
        if args.services:
            raise UserError(f"demo --services needs a trained model (no manifest.json in {args.model})")
        return front_end_only(args)
    return identify_demo(args, pieces)


def front_end_only(args: argparse.Namespace) -> int:
    """No model: synthesise and stream the performance, show the spectrogram, say why no identity."""
    from cli.commands.spectrogram import plot_spectrogram
    from scoreid.audio.spectrogram import OnlineSpectrogram
    from synthesis.demo_data import shifted_performance
    from synthesis.engrave import engrave

    print(f"demo: synthesising {args.piece} under held-out conditions (csound soundfont, tempo 1.25x, room)")
    audio = shifted_performance(engrave(args.piece).midi_notes).audio[: int(args.seconds * C.SAMPLE_RATE)]
    hop = int(args.hop * C.SAMPLE_RATE)
    online = OnlineSpectrogram()
    frames = [online.push(audio[s : s + hop]) for s in range(0, len(audio), hop)]
    frames.append(online.flush())
    spec = np.concatenate(frames)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "demo-spectrogram.png"
    plot_spectrogram(spec, png, title=f"{args.piece} (soundfont csound)")
    print(
        f"demo: streamed {len(audio) / C.SAMPLE_RATE:.1f} s in hops of {args.hop} s -> {len(spec)} frames; wrote {png}"
    )
    print(
        f"demo: no trained model in {args.model} yet, so no identification is shown; "
        "train one with trainer/run.py (README, 'Training')"
    )
    return 0


def identify_demo(args: argparse.Namespace, pieces: list[str]) -> int:
    from tqdm import tqdm

    from cli.commands.identify import plot_history, status_line
    from scoreid.identify.stream import Identifier, Update, time_to_identify
    from scoreid.inference import load_model
    from scoreid.library.build import add_folder, open_or_create
    from scoreid.library.store import Library, write_index
    from scoreid.tensors import model_fingerprint
    from synthesis.demo_data import engrave_piece, notes_of, piece_id, shifted_performance
    from synthesis.engrave import EngraveError

    cache = args.cache or demo_cache()
    sheets = cache / "sheets"
    todo = [s for s in pieces if not (sheets / piece_id(s) / "piece.json").exists()]
    if todo:
        print(f"demo: engraving {len(todo)} pieces into {sheets} (once; cached)")
    tty = sys.stderr.isatty()  # progress bars on a terminal only; a log gets the lines around them
    for src in tqdm(todo, desc="engrave", unit="piece", file=sys.stderr, disable=not (todo and tty)):
        try:
            engrave_piece(src, sheets / piece_id(src))
        except (EngraveError, Exception) as e:  # a corpus file Verovio cannot take: leave it out
            print(f"demo: warning: {src} could not be engraved ({e}); left out", file=sys.stderr)
    enc = load_model(args.model)
    lib_dir = cache / f"library-{model_fingerprint(args.model)[:12]}"
    index = open_or_create(lib_dir, enc, args.model, None)
    folders = [sheets / piece_id(s) for s in pieces if (sheets / piece_id(s) / "piece.json").exists()]
    t0 = time.perf_counter()
    for f in tqdm(folders, desc="library", unit="piece", file=sys.stderr, disable=not tty):
        add_folder(index, lib_dir, f, enc, lambda m: print(f"demo: {m}", file=sys.stderr))
    write_index(lib_dir, index)
    lib = Library.open(lib_dir)
    print(
        f"demo: library {lib_dir}: {len(lib.piece_ids)} pieces, {len(lib)} sheet windows "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    target = piece_id(args.piece)
    if target not in lib.pieces:
        raise UserError(f"demo: {args.piece} is not in the demo library (it could not be engraved)")
    perf = shifted_performance(notes_of(sheets / target), tempo_factor=1.25, seed=7)
    audio = perf.audio[: int(args.seconds * C.SAMPLE_RATE)]
    print(
        f"demo: performing {args.piece} [{target}]: csound soundfont, tempo 1.25x with a tempo curve, "
        f"room and noise; streaming {len(audio) / C.SAMPLE_RATE:.1f} s in hops of {args.hop} s"
    )
    history: list[Update] = []
    shown: set[float] = set()  # the final update repeats the last hop's time: one line per time

    def show(u: Update) -> None:
        history.append(u)
        right = bool(u.ranking) and u.ranking[0][0] == target
        if abs(u.t - round(u.t)) < 1e-6 and int(round(u.t)) % 2 == 0 and round(u.t) not in shown:
            shown.add(round(u.t))
            print(("  OK " if right else "     ") + status_line(u, lib), flush=True)

    t1 = time.perf_counter()
    if args.services:
        stream_services(args, lib, lib_dir, audio, show)
    else:
        ident = Identifier(lib, enc, EngineSettings(hop_s=args.hop))
        chunk = int(args.hop * C.SAMPLE_RATE)
        for s in range(0, len(audio) + chunk, chunk):
            for u in ident.push(audio[s : s + chunk]) if s < len(audio) else ident.finish():
                show(u)
    dt = time.perf_counter() - t1
    final = history[-1] if history else None
    got = final.ranking[0][0] if final and final.ranking else None
    secs = len(audio) / C.SAMPLE_RATE
    verdict = "correct" if got == target else f"WRONG (expected {target})"
    named = final.identity if final else None
    ts = [u.t for u in history]
    t_first = time_to_identify(ts, [bool(u.ranking) and u.ranking[0][0] == target for u in history])
    t_named = time_to_identify(ts, [u.identity == target for u in history])
    print(
        f"demo: final identity: top piece {got} -> {verdict}; "
        + (f"top from {t_first:.1f} s of audio on; " if got == target else "")
        + (
            f"identified (not unknown) from {t_named:.1f} s on; "
            if named == target
            else "still unknown at the end; "
            if named is None
            else f"identified as {named}; "
        )
        + f"{secs / max(dt, 1e-9):.0f}x real time"
        + (" (paced by the client)" if args.services else "")
    )
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "demo-identify.png"
    plot_history(history, lib, png, title=f"{args.piece} (held-out performance)")
    print(f"demo: wrote {png}")
    return 0


def stream_services(args: argparse.Namespace, lib, lib_dir: Path, audio: np.ndarray, show) -> None:  # type: ignore[no-untyped-def]
    """Start the stack (redis-server + the three services, free loopback ports, a private state
    folder) serving the demo library, stream ``audio`` to it with the gRPC client, hand every
    update to ``show`` as an offline-style :class:`Update`, and stop the stack again."""
    import tempfile

    import grpc

    from cli.client import stream_audio
    from ops.config import load_config
    from ops.stack import loopback_config, start_stack, stop_stack

    with tempfile.TemporaryDirectory(prefix="scoreid-demo-stack-") as state:
        model = Path(args.model).resolve()
        cfg = load_config(None, environ={}, overrides=loopback_config(state, model, {"demo": lib_dir}))
        print("demo: starting the services (redis-server, index, aggregator, encoder) on loopback ...")
        record = start_stack(cfg)
        try:
            print(
                f"demo: stack up at {record['address']}; metrics {record['metrics']['encoder']}; "
                f"streaming at {args.speed:g}x real time"
            )
            for msg in stream_audio(
                record["address"], audio, C.SAMPLE_RATE, speed=args.speed, hop_s=args.hop
            ):
                show(update_of(msg, lib))
        except grpc.RpcError as e:
            raise UserError(f"demo --services: {e.code().name}: {e.details()}") from None
        finally:
            stop_stack(state)
            print("demo: services stopped")


def update_of(msg, lib):  # type: ignore[no-untyped-def]
    """An ``Identification`` from the services as the offline :class:`Update` (for the same
    status lines and plot): the same engine made it, so every field maps one to one."""
    from scoreid.identify.engine import Update
    from scoreid.identify.position import Position

    ranking = [(t.piece, float(t.score), float(t.votes)) for t in msg.top]
    positions = {
        t.piece: Position.from_message(t.position)
        for t in msg.top
        if t.HasField("position") and t.piece in lib.pieces
    }
    return Update(
        t=float(msg.t_seconds),
        ranking=ranking,
        positions=positions,
        identity=msg.identity or None,
        confidence=float(msg.confidence),
    )
