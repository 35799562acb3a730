"""``trainer/run.py export --model M --out DIR``: ONNX (+ TensorRT) engines and the manifest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from scoreid.errors import UserError
from trainer.common import find_checkpoint, load_net
from trainer.data import PairSet, open_corpus
from trainer.export import export_model

NAME = "export"
HELP = "export a fine-tuned model to ONNX (and TensorRT when installed) with a manifest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="fine-tuning run directory or its model.pt")
    p.add_argument("--out", required=True, help="model directory to write (e.g. models/default)")
    p.add_argument(
        "--data", default=None, help="corpus for real parity inputs (default: the one it was trained on)"
    )
    p.add_argument("--parity-n", type=int, default=32, help="real input pairs for the parity check")
    p.add_argument("--no-tensorrt", action="store_true", help="do not try to build TensorRT plans")
    p.add_argument(
        "--int8-calibration",
        type=int,
        default=512,
        metavar="N",
        help="also write audio.int8.onnx, calibrated on N training excerpts (0: no int8 model)",
    )


def parity_inputs(data: str | None, frames: int, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not data or not (Path(data) / "index.json").is_file():
        return None, None
    corpus = open_corpus(data)
    for split in ("test", "valid", "train"):
        pairs = PairSet.from_corpus(corpus, split, "same", max_pieces=2)
        if len(pairs):
            idx = pairs.evenly(n)
            return pairs.audio_batch(idx, frames), pairs.sheet_batch(idx)
    return None, None


def calibration_inputs(data: str | None, frames: int, n: int) -> np.ndarray | None:
    """``n`` audio excerpts evenly over the training split (condition "same") for int8 calibration."""
    if n <= 0 or not data or not (Path(data) / "index.json").is_file():
        return None
    pairs = PairSet.from_corpus(open_corpus(data), "train", "same")
    if not len(pairs):
        return None
    return pairs.audio_batch(pairs.evenly(n), frames)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    ckpt = find_checkpoint(args.model)
    net = load_net(ckpt)
    payload = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    training = dict(payload.get("extra") or {})
    summary = ckpt.parent / "summary.json"
    if not training and summary.is_file():
        training = json.loads(summary.read_text())
    training.setdefault("checkpoint", str(ckpt))
    audio, sheet = parity_inputs(args.data or training.get("corpus"), net.audio_frames, args.parity_n)
    if args.int8_calibration < 0:
        raise UserError("--int8-calibration must be >= 0")
    data = args.data or training.get("corpus")
    calib = calibration_inputs(data, net.audio_frames, args.int8_calibration)
    if args.int8_calibration > 0 and calib is None:
        print("int8 audio model skipped: no corpus to calibrate on (give --data)")
    export_model(net, args.out, training, audio, sheet, tensorrt=not args.no_tensorrt, int8_calibration=calib)
    return 0
