"""``trainer/run.py pretrain --modality audio|sheet``: SimCLR pre-training of one encoder."""

from __future__ import annotations

import argparse
import dataclasses

from trainer import presets, pretrain
from trainer.common import add_common, set_threads

NAME = "pretrain"
HELP = "self-supervised (SimCLR) pre-training of the audio or the sheet encoder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modality", required=True, choices=("audio", "sheet"))
    add_common(p)
    p.add_argument("--pool", action="append", default=[], help="unlabeled pool corpus (repeatable)")
    p.add_argument("--out", required=True, help="run directory (encoder.pt, state.pt, metrics.*)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its state.pt")
    p.add_argument("--max-epochs", type=int, default=None, help="override the preset's epoch limit")
    p.add_argument(
        "--time-budget", type=float, default=None, help="override the preset's wall-clock budget (s)"
    )


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    set_threads(args, preset)
    cfg = preset.pretrain_audio if args.modality == "audio" else preset.pretrain_sheet
    if args.max_epochs is not None:
        cfg = dataclasses.replace(cfg, max_epochs=args.max_epochs)
    if args.time_budget is not None:
        cfg = dataclasses.replace(cfg, time_budget_s=args.time_budget)
    pretrain.run(
        cfg, args.data, args.pool, args.out, seed=args.seed, resume=args.resume, device_name=args.device
    )
    return 0
