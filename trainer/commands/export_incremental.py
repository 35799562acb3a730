"""``trainer/run.py export-incremental --model DIR``: add the incremental audio encoder's graphs to an
exported model directory (``trainer/run.py export`` writes them for new models)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from scoreid.errors import UserError
from scoreid.incremental import INCREMENTAL_FILES, manifest_key
from scoreid.inference import read_manifest
from scoreid.models import load_checkpoint
from trainer.commands.export import calibration_inputs, parity_inputs
from trainer.export_incremental import add_incremental

NAME = "export-incremental"
HELP = "add the incremental audio encoder (audio.{stem,edge,head}[.int8].onnx) to an exported model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="exported model directory (e.g. models/default)")
    p.add_argument(
        "--data", default=None, help="corpus for parity and calibration inputs (default: the training one)"
    )
    p.add_argument("--parity-n", type=int, default=32, help="real input windows for the parity check")
    p.add_argument(
        "--int8-calibration",
        type=int,
        default=512,
        metavar="N",
        help="also write the int8 graphs, calibrated on N training excerpts (0: none)",
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.int8_calibration < 0:
        raise UserError("--int8-calibration must be >= 0")
    manifest = read_manifest(args.model)
    data = args.data or manifest.get("training", {}).get("corpus")
    frames = load_checkpoint(args.model / manifest["files"]["torch"]).audio_frames
    audio, _ = parity_inputs(data, frames, args.parity_n)
    if audio is None:
        raise UserError(f"no corpus to take parity inputs from ({data!r}): give --data")
    calib = calibration_inputs(data, frames, args.int8_calibration)
    if args.int8_calibration > 0 and calib is None:
        print("int8 graphs skipped: no training excerpts to calibrate on (give --data)")
    manifest = add_incremental(args.model, audio, calib)
    keys = {manifest_key(part, int8) for part in INCREMENTAL_FILES for int8 in (False, True)}
    added = sorted(v for k, v in manifest["files"].items() if k in keys)
    print(f"{args.model}: {', '.join(added) or 'nothing added'}")
    return 0
