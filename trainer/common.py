"""Command-line plumbing shared by the trainer's commands: common options, threads, model loading."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from scoreid.errors import UserError
from scoreid.models import CrossModalNet, load_checkpoint
from trainer import presets

NetT = TypeVar("NetT", bound=torch.nn.Module)


def add_common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument(
        "--preset",
        default="cpu",
        choices=sorted(presets.PRESETS),
        help="hyper-parameter preset (default cpu)",
    )
    if data:
        p.add_argument("--data", required=True, help="corpus directory (trainer/run.py corpus build)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the preset's)")


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-d batch in NHWC memory layout (same values and shape).

    Training runs the networks and their batches channels-last: measured on the 2-core build VM
    (one thread, batch 64, forward + backward + Adam of ``CrossModalNet``) 2.8 s -> 1.95 s per step
    (oneDNN's NHWC convolution kernels). Exported models are unaffected (ONNX has no layout).
    """
    return x.contiguous(memory_format=torch.channels_last)


def channels_last_net(net: NetT) -> NetT:
    """A network with its weights in NHWC memory layout, for the batches of :func:`channels_last`
    (torch's type stubs do not list ``memory_format`` for ``Module.to``)."""
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload,no-any-return]


def set_threads(args: argparse.Namespace, preset: presets.Preset) -> None:
    n = args.threads or preset.threads
    if n:
        torch.set_num_threads(n)


def find_checkpoint(model: str | Path) -> Path:
    """A fine-tuned torch checkpoint: a file, or a run/model directory holding model.pt."""
    p = Path(model)
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise UserError(f"{model}: no fine-tuned model (expected a model.pt file or a directory holding one)")
    return p


def load_net(model: str | Path) -> CrossModalNet:
    path = find_checkpoint(model)
    try:
        return load_checkpoint(path)
    except (ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{path}: cannot load ({e})") from None


class TorchEmbedder:
    """numpy in / numpy out adapter around an in-memory network (eval mode)."""

    def __init__(self, net: CrossModalNet, device: str | None = None):
        self.net = net.eval().to(device or "cpu")
        self.device = torch.device(device or "cpu")
        #: frames from the audio window's centre to the music it matches (the evaluation pairs by it)
        self.audio_lead = int(net.audio_lead)

    @torch.inference_mode()
    def embed_audio(self, x: np.ndarray) -> np.ndarray:
        return self.net.embed_audio(torch.from_numpy(np.asarray(x, np.float32)).to(self.device)).cpu().numpy()

    @torch.inference_mode()
    def embed_sheet(self, x: np.ndarray) -> np.ndarray:
        return self.net.embed_sheet(torch.from_numpy(np.asarray(x, np.float32)).to(self.device)).cpu().numpy()
