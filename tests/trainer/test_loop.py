"""The training loop (trainer.loop.fit) on a toy regression: LR halving on a plateau, early stop,
epoch limit, the time budget (also inside an epoch), refinement stages, and resume reproducing an
uninterrupted run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from scoreid.errors import UserError
from trainer import loop
from trainer.loop import Method, Schedule, Stage, fit, optimise

LR = 0.05


class Toy(Method):
    """Fits y = sum(x) with a linear layer; the metric is scripted, or 1 / (1 + validation MSE)."""

    def __init__(self, scripted: list[float] | None = None, clock: list[float] | None = None):
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)
        self.scripted = list(scripted) if scripted is not None else None
        self.clock = clock  # advanced one second per step when given
        self.steps = 0
        self.saved: list[tuple[int, float]] = []
        self.restarts: list[tuple[int, float, float]] = []
        self.val_x = torch.from_numpy(np.random.default_rng(99).standard_normal((64, 3)).astype(np.float32))

    def step(self, model, opt, n, rng):
        self.steps += 1
        if self.clock is not None:
            self.clock[0] += 1.0
        x = torch.from_numpy(rng.standard_normal((n, 3)).astype(np.float32))
        return optimise(opt, (model(x) - x.sum(1, keepdim=True)).pow(2).mean())

    @torch.no_grad()
    def validate(self):
        if self.scripted is not None:
            m = self.scripted.pop(0)
        else:
            m = 1.0 / (1.0 + float((self.model(self.val_x) - self.val_x.sum(1, keepdim=True)).pow(2).mean()))
        return {"val_MRR": m, "val_R@1": m / 2}

    def save_best(self, epoch, metric, path):
        self.saved.append((epoch, metric))
        path.write_text(json.dumps({"epoch": epoch, "metric": metric}))

    def restart(self, stage, lr, best):
        self.restarts.append((stage, lr, best))


def schedule(*stages: Stage, staged: bool = False, lr_patience: int = 1) -> Schedule:
    return Schedule(stages, batch=4, samples_per_epoch=12, lr_patience=lr_patience, staged=staged)


def run(method, sched, out, resume=False, seed=0, log=lambda msg: None):
    return fit(
        method, sched, out, {"title": "toy"}, np.random.default_rng(seed), torch.device("cpu"), resume, log
    )


def rows(out):
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_plateau_halves_the_lr_and_early_stop_ends_the_stage(tmp_path):
    toy = Toy(scripted=[0.1, 0.2, 0.2, 0.15, 0.1, 0.9, 0.9])
    done = run(toy, schedule(Stage("toy", LR, max_epochs=10, early_stop=3)), tmp_path)
    assert (done.stopped, done.epochs, done.best) == ("early stop", 5, 0.2)
    assert toy.saved == [(1, 0.1), (2, 0.2)] and toy.steps == 5 * 3
    r = rows(tmp_path)
    assert list(r[0]) == ["epoch", "train_loss", "val_MRR", "val_R@1", "lr", "seconds"]
    # two epochs without improvement (lr_patience 1) halve the LR
    assert [float(x["lr"]) for x in r] == [LR, LR, LR, LR / 2, LR / 2]
    assert [int(x["epoch"]) for x in r] == [1, 2, 3, 4, 5]
    st = torch.load(tmp_path / "state.pt", weights_only=False)
    assert (st["epoch"], st["best"], st["bad"]) == (5, 0.2, 3) and "stage" not in st
    assert json.loads((tmp_path / "metrics.json").read_text())["config"] == {"title": "toy"}
    assert (tmp_path / "metrics.png").is_file()


def test_epoch_limit(tmp_path):
    done = run(Toy(), schedule(Stage("toy", LR, max_epochs=2, early_stop=5)), tmp_path)
    assert (done.stopped, done.epochs) == ("max epochs", 2)


def test_time_budget_ends_the_epoch_at_the_step_that_crosses_it(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(loop, "monotonic", lambda: clock[0])
    toy = Toy(clock=clock)
    # 3 steps an epoch of 1 s each: epochs of 3 s, 3 s, then cut after 2 steps at 8 s >= 7.5 s
    done = run(toy, schedule(Stage("toy", LR, max_epochs=10, early_stop=10, budget_s=7.5)), tmp_path)
    assert (done.stopped, done.epochs, done.seconds, toy.steps) == ("time budget", 3, 8.0, 8)
    assert [float(x["seconds"]) for x in rows(tmp_path)] == [3.0, 6.0, 8.0]


def test_stages_restart_with_their_lr_and_keep_the_best(tmp_path):
    toy = Toy(scripted=[0.3, 0.5, 0.4, 0.6, 0.2, 0.1])
    stages = (
        Stage("main", LR, max_epochs=2, early_stop=5),
        Stage("refine 1", LR / 2, max_epochs=2, early_stop=5),
        Stage("refine 2", LR / 4, max_epochs=2, early_stop=1),
    )
    done = run(toy, schedule(*stages, staged=True, lr_patience=5), tmp_path)
    assert toy.restarts == [(1, LR / 2, 0.5), (2, LR / 4, 0.6)]
    assert toy.saved == [(1, 0.3), (2, 0.5), (4, 0.6)]
    assert (done.epochs, done.best, done.stopped) == (5, 0.6, "early stop")
    r = rows(tmp_path)
    assert list(r[0])[:3] == ["epoch", "stage", "train_loss"]
    assert [int(x["stage"]) for x in r] == [0, 0, 1, 1, 2]
    assert [float(x["lr"]) for x in r] == [LR, LR, LR / 2, LR / 2, LR / 4]
    st = torch.load(tmp_path / "state.pt", weights_only=False)
    assert (st["stage"], st["stage_epoch"], st["total_epoch"], st["lr0"]) == (2, 1, 5, LR / 4)


class Interrupt(Exception):
    pass


def interrupt_at(prefix):
    def log(msg):
        if msg.startswith(prefix):
            raise Interrupt(msg)

    return log


@pytest.mark.parametrize("staged", [False, True])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, staged):
    stages = [Stage("main", LR, max_epochs=3, early_stop=5)]
    if staged:
        stages.append(Stage("refine 1", LR / 2, max_epochs=2, early_stop=5))
    sched = schedule(*stages, staged=staged)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    a = Toy()
    done_a = run(a, sched, whole)
    b = Toy()
    # the log line of an epoch comes before its state.pt: this stops with the state of the epoch before
    stop = "refine 1 epoch 1:" if staged else "main epoch 3:"
    with pytest.raises(Interrupt):
        run(b, sched, parts, log=interrupt_at(stop))
    messages: list[str] = []
    c = Toy()  # a fresh process: other initial weights and RNG position do not matter
    torch.nn.init.zeros_(c.model.weight)
    done_c = run(c, sched, parts, resume=True, seed=123, log=messages.append)
    assert messages[0].startswith(f"resumed {parts} at {'stage 0 epoch 3' if staged else 'epoch 2'}")
    assert (done_c.epochs, done_c.best) == (done_a.epochs, done_a.best)
    ra, rc = rows(whole), rows(parts)
    for x in ra + rc:
        x.pop("seconds")
    assert rc == ra
    assert torch.equal(a.model.weight, c.model.weight) and torch.equal(a.model.bias, c.model.bias)
    assert c.restarts == a.restarts and len(a.restarts) == int(staged)


def test_a_kill_between_the_best_model_and_the_state_leaves_them_consistent(tmp_path):
    """Killed after epoch 3 wrote its (better) model, before its state.pt: the resumed run redoes
    epoch 3, which this time is worse (threads are not bit-reproducible) — best.pt must be epoch 2's,
    the best the state knows, not the orphan of the killed epoch."""
    sched = schedule(Stage("main", LR, max_epochs=4, early_stop=9), lr_patience=9)
    with pytest.raises(Interrupt):
        run(Toy(scripted=[0.1, 0.2, 0.3]), sched, tmp_path, log=interrupt_at("main epoch 3:"))
    assert json.loads((tmp_path / "best.pt").read_text())["epoch"] == 2  # epoch 3's is still pending
    done = run(Toy(scripted=[0.15, 0.18]), sched, tmp_path, resume=True)
    assert done.best == 0.2 and json.loads((tmp_path / "best.pt").read_text()) == {"epoch": 2, "metric": 0.2}
    assert [f.name for f in tmp_path.glob(".best.pt.*")] == []


def test_a_kill_after_the_state_promotes_the_pending_best_on_resume(tmp_path):
    sched = schedule(Stage("main", LR, max_epochs=3, early_stop=9), lr_patience=9)
    run(Toy(scripted=[0.1, 0.2]), schedule(Stage("main", LR, max_epochs=2, early_stop=9)), tmp_path)
    # as if killed between writing epoch 2's state.pt and moving its pending best into place
    (tmp_path / "best.pt").replace(tmp_path / ".best.pt.epoch2")
    (tmp_path / ".best.pt.epoch9").write_text("an orphan")
    run(Toy(scripted=[0.05]), sched, tmp_path, resume=True)
    assert json.loads((tmp_path / "best.pt").read_text())["epoch"] == 2
    assert [f.name for f in tmp_path.glob(".best.pt.*")] == []


def test_nothing_to_resume_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nothing to resume"):
        run(Toy(), schedule(Stage("toy", LR, 1, 1)), tmp_path, resume=True)


def test_optimise_skips_a_non_finite_loss():
    w = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    assert np.isnan(optimise(opt, (w * float("nan")).sum()))
    assert torch.equal(w.detach(), torch.ones(2))
    assert optimise(opt, (w * w).sum()) == pytest.approx(2.0)
    assert torch.allclose(w.detach(), torch.full((2,), 0.8))
