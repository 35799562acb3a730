"""Benchmark: augmentation throughput against training-step time, per stage, on this machine.

``python -m trainer.benchmark [--threads N] [--reps R] [--out FILE.json]`` times, for each stage
at its preset batch size (default the ``cpu`` preset): drawing + augmenting one batch, and one
optimisation step (forward, backward, Adam) on it. Prints a table and writes JSON. Inputs are
random tensors of the contract shapes (the cost does not depend on content); the batch draw from
a corpus (numpy window cutting) is not included.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from scoreid.models import CrossModalNet
from scoreid.tensors import audio_input_shape, sheet_input_shape
from trainer import presets
from trainer.augment import AudioAugment, AudioFinetuneAugment, SheetAugment, SheetFinetuneAugment
from trainer.data import context_frames
from trainer.finetune import train_step as ft_step
from trainer.pretrain import PretrainNet
from trainer.pretrain import train_step as pt_step


def timeit(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", choices=sorted(presets.PRESETS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pr = presets.get(args.preset)
    rows = []

    a = pr.pretrain_audio
    x = torch.rand(a.batch, *audio_input_shape(context_frames(a.audio_frames, a.context_factor)))
    aug = AudioAugment(a.audio_frames)
    net = PretrainNet("audio", a.audio_frames)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    v1, v2 = aug(x), aug(x)
    rows.append(
        (
            "pretrain audio",
            a.batch,
            timeit(lambda: (aug(x), aug(x)), args.reps),
            timeit(lambda: pt_step(net, opt, v1, v2, a.tau), args.reps),
        )
    )

    s = pr.pretrain_sheet
    w = (torch.rand(s.batch, *sheet_input_shape()) < 0.1).float()
    saug = SheetAugment()
    snet = PretrainNet("sheet", s.audio_frames)
    sopt = torch.optim.Adam(snet.parameters(), lr=s.lr)
    w1, w2 = saug(w), saug(w)
    rows.append(
        (
            "pretrain sheet",
            s.batch,
            timeit(lambda: (saug(w), saug(w)), args.reps),
            timeit(lambda: pt_step(snet, sopt, w1, w2, s.tau), args.reps),
        )
    )

    f = pr.finetune
    fa = torch.rand(f.batch, *audio_input_shape(context_frames(f.audio_frames, f.context_factor)))
    fs = (torch.rand(f.batch, *sheet_input_shape()) < 0.1).float()
    faug, fsaug = AudioFinetuneAugment(f.audio_frames), SheetFinetuneAugment()
    cnet = CrossModalNet(f.audio_frames)
    copt = torch.optim.Adam(cnet.parameters(), lr=f.lr)
    ab, sb = faug(fa), fsaug(fs)
    rows.append(
        (
            "finetune",
            f.batch,
            timeit(lambda: (faug(fa), fsaug(fs)), args.reps),
            timeit(lambda: ft_step(cnet, copt, ab, sb, f.margin), args.reps),
        )
    )

    result = {
        "preset": args.preset,
        "threads": args.threads,
        "reps": args.reps,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "stages": [
            {
                "stage": n,
                "batch": b,
                "augment_s": round(ta, 4),
                "step_s": round(ts, 4),
                "augment_share": round(ta / (ta + ts), 4),
                "samples_per_s": round(b / (ta + ts), 2),
            }
            for n, b, ta, ts in rows
        ],
    }
    print(f"{'stage':<16}{'batch':>6}{'augment s':>11}{'step s':>9}{'aug share':>11}{'samples/s':>11}")
    for r in result["stages"]:
        print(
            f"{r['stage']:<16}{r['batch']:>6}{r['augment_s']:>11.3f}{r['step_s']:>9.3f}"
            f"{100 * r['augment_share']:>10.1f}%{r['samples_per_s']:>11.1f}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
