"""``trainer/run.py finetune``: cross-modal fine-tuning with refinement rounds and CCA refit."""

from __future__ import annotations

import argparse
import dataclasses

from trainer import finetune, presets
from trainer.common import add_common, set_threads

NAME = "finetune"
HELP = "fine-tune both encoders on aligned audio-sheet pairs (ranking loss, CCA layer)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--out", required=True, help="run directory (model.pt, best.pt, state.pt, metrics.*)")
    p.add_argument("--init-audio", default=None, help="pre-trained audio encoder (run dir or encoder.pt)")
    p.add_argument("--init-sheet", default=None, help="pre-trained sheet encoder (run dir or encoder.pt)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its state.pt")
    p.add_argument(
        "--max-epochs", type=int, default=None, help="override the preset's main-stage epoch limit"
    )
    p.add_argument(
        "--time-budget", type=float, default=None, help="override the main stage's wall-clock budget (s)"
    )
    p.add_argument(
        "--refine-budget", type=float, default=None, help="override each refinement round's budget (s)"
    )


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    set_threads(args, preset)
    cfg = preset.finetune
    if args.max_epochs is not None:
        cfg = dataclasses.replace(cfg, max_epochs=args.max_epochs)
    if args.time_budget is not None:
        cfg = dataclasses.replace(cfg, time_budget_s=args.time_budget)
    if args.refine_budget is not None:
        cfg = dataclasses.replace(cfg, refine_budget_s=args.refine_budget)
    finetune.run(cfg, args.data, args.out, init_audio=args.init_audio, init_sheet=args.init_sheet, seed=args.seed,
                 resume=args.resume, device_name=args.device, preset=preset.name)  # fmt: skip
    return 0
