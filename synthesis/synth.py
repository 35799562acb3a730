"""Synthesising piano audio from MIDI with FluidSynth and the Debian piano soundfonts.

Which soundfonts are for training and which are held out for the ``shifted`` test condition is
fixed here (see README "Training"): training uses the FluidR3 pianos (stereo and mono
banks) and TimGM6mb; ``shifted`` uses the csound GM bank, never seen in training.
FluidSynth output is byte-identical on repeat for the same MIDI, soundfont and options.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from scoreid import contract as C

SOUNDFONTS: dict[str, tuple[str, ...]] = {
    # name: candidate paths (Debian packages)
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2",),
    "fluidr3mono": (
        "/usr/share/sounds/sf3/FluidR3Mono_GM.sf3",
        "/usr/share/fluidr3mono-gm-soundfont/FluidR3Mono_GM.sf3",
    ),
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2",),
    "csound": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "/usr/share/samples/sf_GMbank.sf2"),
}
DEBIAN_PACKAGE = {
    "fluidr3": "fluid-soundfont-gm",
    "fluidr3mono": "fluidr3mono-gm-soundfont",
    "timgm6mb": "timgm6mb-soundfont",
    "csound": "csound-soundfont",
}
TRAIN_SOUNDFONTS = ("fluidr3", "fluidr3mono", "timgm6mb")
SHIFTED_SOUNDFONTS = ("csound",)


class SynthError(RuntimeError):
    """FluidSynth or a soundfont is missing, or rendering failed."""


def soundfont_path(name: str) -> Path:
    if name not in SOUNDFONTS:
        raise SynthError(f"unknown soundfont {name!r}; known: {', '.join(SOUNDFONTS)}")
    for p in SOUNDFONTS[name]:
        if Path(p).exists():
            return Path(p)
    raise SynthError(f"soundfont {name!r} not found; install the Debian package {DEBIAN_PACKAGE[name]}")


def render_midi(
    midi: bytes,
    soundfont: str,
    sample_rate: int = C.SAMPLE_RATE,
    gain: float = 0.6,
    reverb: bool = False,
    chorus: bool = False,
) -> np.ndarray:
    """Render a Standard MIDI File (bytes) to a mono float32 waveform at ``sample_rate``."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise SynthError("fluidsynth not found; install the Debian package fluidsynth (./setup.sh does)")
    sf_path = soundfont_path(soundfont)
    with tempfile.TemporaryDirectory(prefix="scoreid-synth-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        # dynamic sample loading: only the samples the MIDI uses are read. Same output, but the
        # compressed .sf3 bank loads in 0.2 s instead of 3 s of CPU (measured).
        cmd = [
            exe,
            "-ni",
            "-q",
            "-r",
            str(sample_rate),
            "-g",
            str(gain),
            "-R",
            "1" if reverb else "0",
            "-C",
            "1" if chorus else "0",
            "-o",
            "synth.dynamic-sample-loading=1",
            "-F",
            str(wav),
            str(sf_path),
            str(mid),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0 or not wav.exists():
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise SynthError(f"fluidsynth failed: {msg[-1] if msg else 'no output'}")
        x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise SynthError(f"fluidsynth wrote {sr} Hz, expected {sample_rate}")
    return x.mean(axis=1)
