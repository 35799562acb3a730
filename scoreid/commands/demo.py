"""``scoreid demo``: the main job for a newcomer, on the shipped model and a demo library.

Synthesises a performance of a piano piece from the music21 corpus with the held-out ``shifted``
soundfont, streams it through the incremental front end hop by hop, and writes a plot. The
identification steps run once a trained model is shipped in ``models/default`` (see the README's
"Training" section); until then the demo says so instead of printing any identity.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np

from scoreid import contract as C
from scoreid.audio.spectrogram import OnlineSpectrogram
from scoreid.errors import UserError
from scoreid.synth import SHIFTED_SOUNDFONTS, render_midi

NAME = "demo"
HELP = "run the main job: synthesise a performance, stream it, identify it on the shipped model"

DEMO_PIECE = "schoenberg/opus19/movement2"
MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "default"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="folder for the plot (default demo-out/)"
    )
    p.add_argument("--piece", default=DEMO_PIECE, help=f"music21 corpus piece (default {DEMO_PIECE})")
    p.add_argument("--hop", type=float, default=0.5, help="seconds of audio per streamed chunk")


def music21_midi(name: str) -> bytes:
    from music21 import corpus, midi

    try:
        score = corpus.parse(name)
    except Exception as e:
        raise UserError(f"music21 corpus piece {name!r} could not be loaded: {e}") from None
    mf = midi.translate.streamToMidiFile(score)
    buf = io.BytesIO()
    buf.write(mf.writestr())
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from scoreid.commands.spectrogram import plot_spectrogram

    if args.hop <= 0:
        raise UserError("--hop must be positive")
    print(f"demo: synthesising {args.piece} with the held-out soundfont {SHIFTED_SOUNDFONTS[0]!r}")
    audio = render_midi(music21_midi(args.piece), SHIFTED_SOUNDFONTS[0])
    hop = int(args.hop * C.SAMPLE_RATE)
    online = OnlineSpectrogram()
    frames = []
    t0 = time.perf_counter()
    for start in range(0, len(audio), hop):
        frames.append(online.push(audio[start : start + hop]))
    frames.append(online.flush())
    spec = np.concatenate(frames)
    dt = time.perf_counter() - t0
    secs = len(audio) / C.SAMPLE_RATE
    print(f"demo: streamed {secs:.1f} s of audio in {len(frames) - 1} hops of {args.hop} s "
          f"-> {len(spec)} spectrogram frames ({secs / dt:.0f}x real time)")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "demo-spectrogram.png"
    plot_spectrogram(spec, png, title=f"{args.piece} (soundfont {SHIFTED_SOUNDFONTS[0]})")
    print(f"demo: wrote {png}")
    if not (MODEL_DIR / "manifest.json").exists():
        print(f"demo: no trained model in {MODEL_DIR} yet, so no identification is shown; "
              "train one with trainer/run.py (README, 'Training')")  # fmt: skip
    return 0
