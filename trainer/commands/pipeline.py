"""``trainer/run.py pipeline --preset P --data D --out RUNS``: the whole method, one command.

Pre-trains both encoders (train split + ``--pool`` corpora), fine-tunes each requested variant
(``none`` = no pre-training, ``audio``, ``sheet``, ``both``), evaluates every variant on the test
split under each condition, writes ``RUNS/ablation.json`` and ``RUNS/ablation.md`` (the RESULTS
table), and exports the ``both`` variant (or the only one) to ``--export``. Stages whose
outputs exist are skipped, so re-running after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from scoreid.errors import UserError
from trainer import finetune, presets, pretrain
from trainer.commands.export import calibration_inputs, parity_inputs
from trainer.commands.finetune import add_finetune_overrides, finetune_config
from trainer.common import TorchEmbedder, add_common, load_net, set_threads
from trainer.data import CONDITIONS, open_corpus
from trainer.evaluate import evaluate
from trainer.export import export_model

NAME = "pipeline"
HELP = "pre-train both encoders, fine-tune the ablation variants, evaluate, export (one preset)"
VARIANTS = ("none", "audio", "sheet", "both")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--pool", action="append", default=[], help="unlabeled pool corpus (repeatable)")
    p.add_argument("--out", required=True, help="runs directory")
    p.add_argument("--variants", default="both", help="comma list of none,audio,sheet,both (default both)")
    p.add_argument("--conditions", default="same,shifted", help="comma list of evaluation conditions")
    p.add_argument("--export", default=None, help="model directory to export the 'both' variant to")
    add_finetune_overrides(p)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| pre-training | condition | N | a→s R@1 | a→s R@10 | a→s R@25 | a→s MRR | a→s MR | s→a R@1 | s→a MRR "
        "| s→a MR | piece-ID top-1 | piece-ID MRR | recordings | piece-ID top-1, product votes |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        sr, pi = r["snippet_retrieval"], r["piece_identification"]
        a, s = sr["audio_to_sheet"], sr["sheet_to_audio"]
        prod = pi.get("product_votes", {}).get("top1")
        lines.append(
            f"| {r['variant']} | {r['condition']} | {sr['N']} | {a['R@1']:.3f} | {a['R@10']:.3f} | {a['R@25']:.3f} "
            f"| {a['MRR']:.3f} | {a['MR']:.0f} | {s['R@1']:.3f} | {s['MRR']:.3f} | {s['MR']:.0f} | {pi['top1']:.3f} "
            f"| {pi['MRR']:.3f} | {pi['recordings']} | {'-' if prod is None else f'{prod:.3f}'} |"
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    preset = presets.get(args.preset)
    set_threads(args, preset)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = [v for v in variants if v not in VARIANTS] + [c for c in conditions if c not in CONDITIONS]
    if bad or not variants:
        raise UserError(f"unknown variants/conditions {bad}; variants {VARIANTS}, conditions {CONDITIONS}")
    out = Path(args.out)
    need = {m for v in variants for m in ("audio", "sheet") if v in (m, "both")}
    for modality in sorted(need):
        run_dir = out / f"pretrain-{modality}"
        if not (run_dir / "summary.json").is_file():
            cfg = preset.pretrain_audio if modality == "audio" else preset.pretrain_sheet
            resume = (run_dir / "state.pt").is_file()
            pretrain.run(
                cfg, args.data, args.pool, run_dir, seed=args.seed, resume=resume, device_name=args.device
            )
    corpus = open_corpus(args.data)
    rows = []
    for v in variants:
        run_dir = out / f"finetune-{v}"
        if not (run_dir / "model.pt").is_file():
            init_a = out / "pretrain-audio" if v in ("audio", "both") else None
            init_s = out / "pretrain-sheet" if v in ("sheet", "both") else None
            finetune.run(
                finetune_config(preset, args),
                args.data,
                run_dir,
                init_audio=init_a,
                init_sheet=init_s,
                seed=args.seed,
                resume=(run_dir / "state.pt").is_file(),
                device_name=args.device,
                preset=preset.name,
            )
        net = load_net(run_dir)
        for cond in conditions:
            res_path = run_dir / f"eval-{cond}.json"
            if res_path.is_file():
                res = json.loads(res_path.read_text())
            else:
                res = evaluate(
                    TorchEmbedder(net),
                    corpus,
                    "test",
                    cond,
                    preset.eval,
                    net.audio_frames,
                    res_path,
                    str(run_dir),
                )
            rows.append({"variant": v, "condition": cond, **res})
    (out / "ablation.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "ablation.md").write_text(table(rows))
    print(table(rows))
    if args.export:
        chosen = "both" if "both" in variants else variants[-1]
        run_dir = out / f"finetune-{chosen}"
        net = load_net(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        audio, sheet = parity_inputs(args.data, net.audio_frames, 32)
        calib = calibration_inputs(args.data, net.audio_frames, 512)
        export_model(net, args.export, summary, audio, sheet, int8_calibration=calib)
        for cond in conditions:  # each condition's evaluation and the plot its JSON names
            for src in (run_dir / f"eval-{cond}.json", run_dir / f"eval-{cond}.png"):
                if src.is_file():
                    (Path(args.export) / src.name).write_bytes(src.read_bytes())
    print(f"pipeline ({preset.name}) finished in {time.monotonic() - t0:.0f} s")
    return 0
