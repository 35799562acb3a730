"""The tensor contract: what the encoders take and what identifies the embedding space.

Beside ``scoreid.contract`` (the constants: sample rate, frames, bands, window sizes), this module
holds the functions that turn contract data into network inputs, shared by training, the library
builder, the offline engine and the encoder service:

- ``audio_window``: an excerpt of ``frames`` spectrogram frames centred on a frame, zero padded;
- ``audio_to_network``: (B, frames, bins) excerpts -> float32 (B, 1, bins, frames), bins low to
  high along axis 2 — the audio encoder's input (``audio_input_shape``);
- ``sheet_to_network``: 160 x 200 sheet windows (uint8, white paper 255) -> 2x2 area downscale to
  float32 (B, 1, 80, 100) in [0, 1] with ink = 1 — the sheet encoder's input (``sheet_input_shape``);
- ``model_fingerprint``: what identifies a model's sheet embedding space, which a library stores so
  that audio is never matched against sheets embedded by another model, while models that share
  the space (a distilled audio student and its teacher) share libraries.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from scoreid import contract as C


def audio_window(spec: np.ndarray, centre_frame: float, frames: int = C.AUDIO_WINDOW_FRAMES) -> np.ndarray:
    """(frames, bins) excerpt of ``spec`` centred on ``centre_frame``, zero padded at the ends."""
    n, bins = spec.shape
    f0 = int(round(centre_frame - frames / 2.0))
    out = np.zeros((frames, bins), np.float32)
    s0, s1 = max(0, f0), min(n, f0 + frames)
    if s1 > s0:
        out[s0 - f0 : s1 - f0] = spec[s0:s1]
    return out


def audio_to_network(windows: np.ndarray) -> np.ndarray:
    """(B, frames, bins) excerpts -> float32 (B, 1, bins, frames), the audio encoder's input."""
    w = np.asarray(windows, np.float32)
    if w.ndim == 2:
        w = w[None]
    return np.ascontiguousarray(w.transpose(0, 2, 1)[:, None])


def audio_input_shape(frames: int) -> tuple[int, int, int]:
    """The audio encoder's input shape without the batch axis: (1, bins, frames)."""
    return (1, C.N_BINS, frames)


def sheet_to_network(windows: np.ndarray) -> np.ndarray:
    """uint8 windows (B, 160, 200) -> float32 (B, 1, 80, 100) in [0, 1], ink = 1."""
    w = np.asarray(windows)
    if w.ndim == 2:
        w = w[None]
    b, h, wd = w.shape
    d = C.SHEET_DOWNSCALE
    ink = 1.0 - w.astype(np.float32) / 255.0
    ink = ink.reshape(b, h // d, d, wd // d, d).mean(axis=(2, 4))
    return ink[:, None].astype(np.float32)


def sheet_input_shape() -> tuple[int, int, int]:
    """The sheet encoder's input shape without the batch axis: (1, 80, 100)."""
    return (1, C.SHEET_NET_H, C.SHEET_NET_W)


def model_fingerprint(model_dir: Path) -> str:
    """The model's sheet embedding space, as a library records it: the sha256 of the manifest's
    ``sheet_space`` (the sheet pathway's weights, written by ``trainer/run.py export``) and
    ``contract``; for a model exported without ``sheet_space``, the sha256 of its manifest (the
    fingerprint libraries recorded before, so they stay valid)."""
    raw = (Path(model_dir) / "manifest.json").read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sheet_space"), str):
        return hashlib.sha256(raw).hexdigest()
    key = {"sheet_space": manifest["sheet_space"], "contract": manifest.get("contract")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
