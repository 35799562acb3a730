"""``scoreid spectrogram``: the contract spectrogram of an audio file, as a PNG and/or .npy."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scoreid import contract as C
from scoreid.audio.io import load_audio
from scoreid.audio.spectrogram import spectrogram
from scoreid.errors import UserError

NAME = "spectrogram"
HELP = "compute the contract log-frequency spectrogram of an audio file (PNG plot and/or .npy)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", type=Path, help="audio file (WAV, FLAC, OGG, MP3; any rate, mono or stereo)")
    p.add_argument("--out", type=Path, help="PNG plot to write")
    p.add_argument("--npy", type=Path, help="write the (frames, 92) float32 array here")


def plot_spectrogram(spec: np.ndarray, out: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(min(20, 4 + len(spec) / 100), 3.5))
    ax.imshow(
        spec.T, origin="lower", aspect="auto", cmap="magma", extent=(0, len(spec) / C.FPS, 0, spec.shape[1])
    )
    ax.set_xlabel("seconds")
    ax.set_ylabel("log-frequency bin")
    ax.set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.npy:
        raise UserError("nothing to do: give --out FILE.png and/or --npy FILE.npy")
    from cli.commands.outputs import output_file

    if args.out:
        output_file(args.out, ".png", "--out")
    if args.npy:
        output_file(args.npy, ".npy", "--npy")
    spec = spectrogram(load_audio(args.audio))
    if args.npy:
        np.save(args.npy, spec)
    if args.out:
        plot_spectrogram(spec, args.out, title=args.audio.name)
    print(f"{args.audio}: {len(spec)} frames ({len(spec) / C.FPS:.1f} s) x {spec.shape[1]} bins")
    return 0
