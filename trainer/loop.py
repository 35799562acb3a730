"""The one training loop of the trainer: epochs, validation, LR plateau, early stop, budget, resume.

In the shape of facebookresearch/moco's runner: what a run trains is a :class:`Method` in its own
module (:mod:`trainer.pretrain`: SimCLR on one encoder; :mod:`trainer.finetune`: the cross-modal
network), its data come from :mod:`trainer.data`, and :func:`fit` runs the same schedule for both:

- a run is a sequence of :class:`Stage` s (pre-training: one; fine-tuning: the main stage, then the
  refinement rounds, which the method restarts from its best model). Each stage has its own LR,
  epoch limit, patience (it ends after that many epochs without a better validation metric) and
  wall-clock budget, and a fresh Adam whose LR ``ReduceLROnPlateau`` halves after ``lr_patience``
  epochs without improvement; the best metric carries over from stage to stage.
- an epoch is ``samples_per_epoch // batch`` steps (at least one) of ``batch // world size``
  samples per process (at least two). A single process ends an epoch at the first step past the
  stage's budget; DDP ranks stop at epoch ends only, so that they stay in step.
- after each epoch rank 0 validates and broadcasts the metric (``val_MRR``), so every rank steps
  its LR schedule and early stopping alike; a better metric makes the method save its best model
  (to a pending file that replaces ``Method.best_file`` only after the epoch's ``state.pt``, so a kill
  between the two never leaves a best model that the state does not know; resume settles it);
  rank 0 appends the epoch's row to ``metrics.csv``/``.json``/``.png`` (:mod:`trainer.runlog`) and
  rewrites ``state.pt``, everything ``resume`` needs (network, optimiser, scheduler, RNG streams,
  counters, rows). A one-stage run saves ``epoch``/``elapsed``; a staged run (``Schedule.staged``)
  also logs a ``stage`` column and saves ``lr0``, ``stage``, ``stage_epoch``, ``total_epoch``,
  ``stage_elapsed`` and ``total_elapsed``; both keep ``best_epoch``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from scoreid.errors import UserError
from trainer import distributed as D
from trainer.runlog import MetricsLog, restore_rng, rng_state, seed_everything

#: The validation metric that drives the schedule (higher is better).
METRIC = "val_MRR"


@dataclass(frozen=True)
class Stage:
    label: str  #: progress and log prefix, e.g. "pretrain audio", "finetune refine 1"
    lr: float  #: the stage's initial learning rate
    max_epochs: int
    early_stop: int  #: the stage ends after this many epochs without a better metric
    budget_s: float | None = None  #: wall-clock seconds of training in the stage


@dataclass(frozen=True)
class Schedule:
    stages: Sequence[Stage]
    batch: int  #: samples per step over all processes
    samples_per_epoch: int
    lr_patience: int  #: halve the LR after this many epochs without improvement
    weight_decay: float = 0.0
    staged: bool = False  #: log the stage column and save the stage counters (fine-tuning)


class Method:
    """What a run plugs into :func:`fit`: its network and what differs between runs."""

    model: nn.Module  #: the bare network, trained in place (``fit`` wraps it for DDP)
    metric_label = "val MRR"  #: how the epoch's log line names the metric
    best_file = "best.pt"  #: the file under the run directory that holds the best model

    def step(self, model: nn.Module, opt: torch.optim.Optimizer, n: int, rng: np.random.Generator) -> float:
        """Draw a batch of ``n`` samples, take one optimisation step of ``model``; returns the loss."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Rank 0's validation of ``self.model``: ``val_MRR``, ``val_R@1`` and any other columns."""
        raise NotImplementedError

    def save_best(self, epoch: int, metric: float, path: Path) -> None:
        """Rank 0: the model has the best metric so far (``epoch`` counts over all stages): write it
        to ``path``, which :func:`fit` moves to ``best_file`` once the epoch's ``state.pt`` is written."""
        raise NotImplementedError

    def restart(self, stage: int, lr: float, best: float) -> None:
        """Every rank, before stage ``stage`` > 0 starts (not on resume) with a fresh optimiser at ``lr``."""


@dataclass
class Outcome:
    best: float  #: the best validation metric
    epochs: int  #: over all stages
    seconds: float  #: training time over all stages (validation not counted)
    stopped: str  #: why the last stage ended: "early stop", "time budget" or "max epochs"


@dataclass
class Progress:
    """The loop's counters (what ``state.pt`` keeps besides the weights, optimiser and RNG)."""

    stage: int = 0
    stage_epoch: int = 0
    epoch: int = 0  #: over all stages
    best: float = -1.0
    bad: int = 0  #: epochs since the best
    best_epoch: int = 0  #: the epoch (over all stages) of ``best``
    stage_elapsed: float = 0.0
    elapsed: float = 0.0  #: over all stages

    def to_state(self, staged: bool, lr0: float) -> dict[str, Any]:
        if not staged:
            return {
                "epoch": self.epoch,
                "best": self.best,
                "bad": self.bad,
                "elapsed": self.elapsed,
                "best_epoch": self.best_epoch,
            }
        return {
            "lr0": lr0,
            "stage": self.stage,
            "stage_epoch": self.stage_epoch,
            "total_epoch": self.epoch,
            "best": self.best,
            "bad": self.bad,
            "stage_elapsed": self.stage_elapsed,
            "total_elapsed": self.elapsed,
            "best_epoch": self.best_epoch,
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> Progress:
        best_epoch = st.get("best_epoch", 0)  # state.pt files written before it was kept: unknown
        if "stage" not in st:
            return cls(
                0, st["epoch"], st["epoch"], st["best"], st["bad"], best_epoch, st["elapsed"], st["elapsed"]
            )
        return cls(
            st["stage"],
            st["stage_epoch"],
            st["total_epoch"],
            st["best"],
            st["bad"],
            best_epoch,
            st["stage_elapsed"],
            st["total_elapsed"],
        )

    def stopped(self, stage: Stage) -> str | None:
        """Why ``stage`` is over, or None while it goes on."""
        if self.bad >= stage.early_stop:
            return "early stop"
        if stage.budget_s is not None and self.stage_elapsed >= stage.budget_s:
            return "time budget"
        if self.stage_epoch >= stage.max_epochs:
            return "max epochs"
        return None


def pending_best(out: Path, best_file: str, epoch: int) -> Path:
    """Where epoch ``epoch``'s best model waits until that epoch's ``state.pt`` is written."""
    return out / f".{best_file}.epoch{epoch}"


def settle_best(out: Path, best_file: str, p: Progress) -> None:
    """On resume: a pending best model of the epoch ``state.pt`` ended on (killed after the state,
    before the move) becomes ``best_file``; one of an epoch the state never saw is dropped (that
    epoch runs again)."""
    for f in out.glob(f".{best_file}.epoch*"):
        if f == pending_best(out, best_file, p.epoch) and p.best_epoch == p.epoch:
            f.replace(out / best_file)
        else:
            f.unlink()


def start(seed: int, device_name: str | None) -> tuple[torch.device, int, np.random.Generator]:
    """This process's device (``device_name`` or the default), DDP rank (joining the process group
    under torchrun) and RNG: python, numpy and torch seeded with ``seed + rank``, so that every rank
    draws its own batches."""
    device = D.local_device(device_name)
    rank, _ = D.setup(device)
    return device, rank, seed_everything(seed + rank)


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """Back-propagate ``loss`` and step ``opt``; a non-finite loss (a degenerate batch, e.g. the CCA
    layer on collapsed features) is skipped rather than poison the weights. Returns the loss (nan
    when skipped)."""
    opt.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return float("nan")
    loss.backward()
    opt.step()
    return float(loss.item())


def make_optimiser(model: nn.Module, schedule: Schedule, lr: float) -> tuple[torch.optim.Optimizer, Any]:
    """Adam at ``lr`` and its plateau scheduler (LR x 0.5 after ``lr_patience`` epochs without a
    better metric)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=schedule.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=0.5, patience=schedule.lr_patience
    )
    return opt, sched


def fit(
    method: Method,
    schedule: Schedule,
    out: Path,
    config: dict[str, Any],
    rng: np.random.Generator,
    device: torch.device,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Train ``method.model`` through the stages of ``schedule`` in the run directory ``out``
    (``metrics.*`` with ``config``, ``state.pt``); with ``resume``, continue from ``out/state.pt``."""
    rank, world = D.world()
    model = method.model
    metrics = MetricsLog(out, config)
    p = Progress()
    opt, sched = make_optimiser(model, schedule, schedule.stages[0].lr)
    lr0 = schedule.stages[0].lr
    state_path = out / "state.pt"
    if resume:
        if not state_path.is_file():
            raise UserError(f"{out}: nothing to resume (no state.pt)")
        st = torch.load(str(state_path), map_location=device, weights_only=False)
        model.load_state_dict(st["model"])
        lr0 = st.get("lr0", lr0)
        opt, sched = make_optimiser(model, schedule, lr0)
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        restore_rng(rng, st["rng"])
        p = Progress.from_state(st)
        metrics = MetricsLog(out, config, st["rows"])
        settle_best(out, method.best_file, p)
        where = f"stage {p.stage} epoch {p.stage_epoch}" if schedule.staged else f"epoch {p.epoch}"
        log(f"resumed {out} at {where} (best val MRR {p.best:.4f})")
    out.mkdir(parents=True, exist_ok=True)
    train_model = D.wrap(model, device)
    local_batch = max(2, schedule.batch // world)
    steps = max(1, schedule.samples_per_epoch // schedule.batch)

    while True:
        stage = schedule.stages[p.stage]
        while (stopped := p.stopped(stage)) is None:
            t0 = monotonic()
            losses = []
            desc = f"{stage.label} epoch {p.stage_epoch + 1}"
            bar = tqdm(range(steps), desc=desc, disable=rank != 0 or not sys.stderr.isatty(), leave=False)
            for _ in bar:
                losses.append(method.step(train_model, opt, local_batch, rng))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                # single process: the budget may end an epoch early (DDP ranks stop at epoch ends only)
                if (
                    world == 1
                    and stage.budget_s is not None
                    and p.stage_elapsed + monotonic() - t0 >= stage.budget_s
                ):
                    break
            p.stage_epoch += 1
            p.epoch += 1
            dt = monotonic() - t0
            p.stage_elapsed += dt
            p.elapsed += dt
            val = method.validate() if rank == 0 else {METRIC: 0.0}
            metric = D.broadcast_float(val[METRIC], device)
            sched.step(metric)
            pending = None
            if metric > p.best:
                p.best, p.bad, p.best_epoch = metric, 0, p.epoch
                if rank == 0:
                    pending = pending_best(out, method.best_file, p.epoch)
                    method.save_best(p.epoch, metric, pending)
            else:
                p.bad += 1
            if rank == 0:
                row = {
                    "epoch": p.epoch,
                    **({"stage": p.stage} if schedule.staged else {}),
                    "train_loss": float(np.nanmean(losses)) if np.isfinite(losses).any() else float("nan"),
                    **val,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": round(p.elapsed, 1),
                }
                metrics.add(row)
                log(
                    f"{desc}: loss {row['train_loss']:.4f} {method.metric_label} {val[METRIC]:.4f} "
                    f"R@1 {val['val_R@1']:.3f} lr {row['lr']:.2g} ({p.elapsed:.0f} s)"
                )
                torch.save(
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "sched": sched.state_dict(),
                        "rng": rng_state(rng),
                        **p.to_state(schedule.staged, lr0),
                        "rows": metrics.rows,
                    },
                    str(state_path.with_suffix(".pt.tmp")),
                )
                # a kill mid-write must not leave a state.pt that cannot be resumed
                state_path.with_suffix(".pt.tmp").replace(state_path)
                if pending is not None:  # the best model becomes current only with the state that knows it
                    pending.replace(out / method.best_file)
            D.barrier()
        if p.stage + 1 >= len(schedule.stages):
            return Outcome(p.best, p.epoch, p.elapsed, stopped)
        # the next stage: the method restarts (e.g. from its best model) with a fresh optimiser
        p.stage += 1
        D.barrier()
        lr0 = schedule.stages[p.stage].lr
        method.restart(p.stage, lr0, p.best)
        p.stage_epoch, p.bad, p.stage_elapsed = 0, 0, 0.0
        opt, sched = make_optimiser(model, schedule, lr0)
