"""``trainer/run.py finetune``: cross-modal fine-tuning with refinement rounds and CCA refit."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TypeVar

from trainer import finetune, presets
from trainer.common import add_common, set_threads

Config = TypeVar("Config", presets.FinetuneConfig, presets.DistillConfig)

NAME = "finetune"
HELP = "fine-tune both encoders on aligned audio-sheet pairs (ranking loss, CCA layer)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--out", required=True, help="run directory (model.pt, best.pt, state.pt, metrics.*)")
    p.add_argument("--init-audio", default=None, help="pre-trained audio encoder (run dir or encoder.pt)")
    p.add_argument("--init-sheet", default=None, help="pre-trained sheet encoder (run dir or encoder.pt)")
    p.add_argument(
        "--init-model",
        default=None,
        help="warm start: all weights (both encoders, CCA layer) of a fine-tuned model (run dir or model.pt); "
        "the schedule starts afresh -- a run that continues a finished one",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its state.pt")
    add_finetune_overrides(p)
    p.add_argument(
        "--audio-lead-frames",
        type=int,
        default=None,
        help="train the audio window centred this many frames before the paired onset (the model "
        "then matches music nearer its window's end: less lag for the score follower); a warm start "
        "(--init-model) does not take its model's lead: give it again (default 0)",
    )
    p.add_argument(
        "--tempo-range",
        type=tempo_range,
        default=None,
        metavar="LO,HI",
        help="time-stretch range of the training audio excerpts (default 0.9,1.1, the paper's); "
        "wider teaches the model music played much slower or faster than its score tempo",
    )


def add_finetune_overrides(p: argparse.ArgumentParser) -> None:
    """Budget overrides of the fine-tuning stage (``finetune`` and ``pipeline``). A step budget
    (``--max-epochs N --refine-max-epochs M --time-budget 1e9 --refine-budget 1e9``) makes a run independent of the
    machine's speed and load, e.g. for ablation rows that must get the same budget."""
    p.add_argument(
        "--max-epochs", type=int, default=None, help="override the preset's main-stage epoch limit"
    )
    p.add_argument(
        "--time-budget", type=float, default=None, help="override the main stage's wall-clock budget (s)"
    )
    p.add_argument(
        "--refine-budget", type=float, default=None, help="override each refinement round's budget (s)"
    )
    p.add_argument(
        "--refine-max-epochs", type=int, default=None, help="override each refinement round's epoch limit"
    )
    p.add_argument(
        "--augment",
        default=None,
        choices=("paper", "world"),
        help="override the fine-tuning augmentation (world: also scans, rooms, microphones, noise)",
    )


def tempo_range(text: str) -> tuple[float, float]:
    """``LO,HI`` as the fine-tuning time-stretch range (0 < LO <= HI <= 2)."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (e.g. 0.6,1.6), got {text!r}") from None
    if not 0 < lo <= hi <= 2:
        raise argparse.ArgumentTypeError(f"tempo range must have 0 < LO <= HI <= 2, got {text!r}")
    return lo, hi


def finetune_config(preset: presets.Preset, args: argparse.Namespace) -> presets.FinetuneConfig:
    """The preset's fine-tuning config with the command line's overrides applied."""
    cfg = apply_overrides(preset.finetune, args)
    lead = getattr(args, "audio_lead_frames", None)
    tempo = getattr(args, "tempo_range", None)
    if tempo is not None:
        cfg = dataclasses.replace(cfg, tempo_range=tempo)
    return cfg if lead is None else dataclasses.replace(cfg, audio_lead_frames=lead)


def apply_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    """``cfg`` (fine-tuning's or distillation's) with the overrides of :func:`add_finetune_overrides`."""
    if args.max_epochs is not None:
        cfg = dataclasses.replace(cfg, max_epochs=args.max_epochs)
    if args.time_budget is not None:
        cfg = dataclasses.replace(cfg, time_budget_s=args.time_budget)
    if args.refine_budget is not None:
        cfg = dataclasses.replace(cfg, refine_budget_s=args.refine_budget)
    if args.refine_max_epochs is not None:
        cfg = dataclasses.replace(cfg, refine_max_epochs=args.refine_max_epochs)
    if args.augment is not None:
        cfg = dataclasses.replace(cfg, augment=args.augment)
    return cfg


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    set_threads(args, preset)
    cfg = finetune_config(preset, args)
    finetune.run(
        cfg,
        args.data,
        args.out,
        init_audio=args.init_audio,
        init_sheet=args.init_sheet,
        seed=args.seed,
        init_model=args.init_model,
        resume=args.resume,
        device_name=args.device,
        preset=preset.name,
    )
    return 0
