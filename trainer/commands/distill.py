"""``trainer/run.py distill``: a smaller audio encoder trained into a fine-tuned model's embedding space."""

from __future__ import annotations

import argparse
import dataclasses

from scoreid.errors import UserError
from scoreid.models.encoders import STEMS
from trainer import distill, presets
from trainer.commands.finetune import add_finetune_overrides, apply_overrides
from trainer.common import add_common, set_threads

NAME = "distill"
HELP = "distil a fine-tuned model's audio encoder into a smaller one (same sheet pathway and space)"


def filters(text: str) -> tuple[int, ...]:
    """``12,24,48,48`` -> (12, 24, 48, 48)."""
    try:
        out = tuple(int(f) for f in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers of filters, got {text!r}"
        ) from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"filters must be positive, got {text!r}")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--teacher", required=True, help="the fine-tuned model to distil (run dir or model.pt)")
    p.add_argument("--out", required=True, help="run directory (model.pt, best.pt, state.pt, metrics.*)")
    p.add_argument(
        "--filters",
        type=filters,
        default=None,
        help="the student's conv filters per block, e.g. 12,24,48,48 (default: the preset's, 12,24,48,48)",
    )
    p.add_argument(
        "--stem",
        default=None,
        choices=STEMS,
        help="the student's first block: full (the paper's) or stride2 (first conv at stride 2, "
        "no pool: the block at half resolution); default: the preset's",
    )
    p.add_argument("--cos-weight", type=float, default=None, help="weight of the cosine gap to the teacher")
    p.add_argument(
        "--nce-weight",
        type=float,
        default=None,
        help="weight of InfoNCE against the teacher's sheet embeddings",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its state.pt")
    add_finetune_overrides(p)


def distill_config(preset: presets.Preset, args: argparse.Namespace) -> presets.DistillConfig:
    """The preset's distillation config with the command line's overrides applied."""
    cfg = apply_overrides(preset.distill, args)
    given = {
        "filters": args.filters,
        "stem": args.stem,
        "cos_weight": args.cos_weight,
        "nce_weight": args.nce_weight,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})
    if cfg.cos_weight < 0 or cfg.nce_weight < 0 or cfg.cos_weight + cfg.nce_weight == 0:
        raise UserError("--cos-weight and --nce-weight must be >= 0 and not both 0")
    return cfg


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    set_threads(args, preset)
    cfg = distill_config(preset, args)
    distill.run(
        cfg,
        args.data,
        args.out,
        args.teacher,
        seed=args.seed,
        resume=args.resume,
        device_name=args.device,
        preset=preset.name,
    )
    return 0
