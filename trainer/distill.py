"""Distillation of a smaller audio encoder: ``trainer/run.py distill --teacher RUN --filters F,F,F,F``.

The teacher is a fine-tuned network (a run directory or its ``model.pt``). The student is a
:class:`scoreid.models.CrossModalNet` whose audio encoder has the student architecture
(``DistillConfig.filters`` / ``stem``, :mod:`scoreid.models.encoders`) and a fresh linear head, and
whose sheet pathway and CCA layer are the teacher's, copied and frozen: no gradients, always in
eval mode (:class:`Student`). The student's audio embedding is its encoder and head, then the
teacher's CCA audio projection and L2 normalisation — what the exported ``audio.onnx`` computes —,
so it lands in the teacher's space and the teacher's sheet library stays valid: the student's
``sheet.onnx`` embeds exactly as the teacher's.

Training (on :func:`trainer.loop.fit`, in the shape of :mod:`trainer.finetune`): aligned pairs of
the training split, condition "same", with fine-tuning's augmentation (``augment`` "paper" or
"world", :class:`trainer.finetune.PairBatches`). Each step the teacher (eval mode, no gradients)
embeds the batch's augmented audio excerpts and sheet windows, and the student's audio pathway
(BatchNorm on batch statistics) is trained with :func:`trainer.losses.distill_loss`: the cosine gap
to the teacher's audio embedding of the same excerpt (weight ``cos_weight``, 1) plus the symmetric
InfoNCE (tau 0.1) against the teacher's sheet embeddings of the batch (weight ``nce_weight``, 0.1);
the module docstring of :mod:`trainer.losses` says why.

Validation is fine-tuning's: audio->sheet MRR on ``val_size`` evenly sampled valid-split pairs
(``val_MRR``, which drives the LR plateau, early stopping and ``best.pt``), so the student and the
teacher compare on one number; the teacher's is computed once at the start and logged, and each
epoch also logs ``val_cos_teacher``, the mean cosine between the student's and the teacher's audio
embeddings of the validation excerpts. There is no CCA refit at the end: the CCA layer is the
teacher's, which the library's sheet embeddings were made with.

Run directory: ``best.pt`` (best student so far), ``model.pt`` (the best student, a complete
``CrossModalNet`` checkpoint whose config records the student architecture; what ``trainer/run.py
export`` takes), ``state.pt`` (for ``--resume``; the teacher is reloaded from ``--teacher`` and
must be the one the run started with), ``metrics.{csv,json,png}``, ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scoreid.errors import UserError
from scoreid.inference import git_commit
from scoreid.models import CrossModalNet, load_checkpoint, save_checkpoint
from scoreid.models.encoders import multiply_adds
from scoreid.tensors import audio_input_shape
from trainer import distributed as D
from trainer.common import channels_last_net, find_checkpoint, load_net
from trainer.finetune import Finetuning, PairData, embed_pairs, retrieval_metrics, staged_schedule
from trainer.loop import fit, optimise, start
from trainer.losses import distill_loss
from trainer.presets import DistillConfig


class Student(nn.Module):
    """What distillation trains: ``net``'s audio pathway; its sheet pathway and CCA layer are frozen
    (no gradients, eval mode even in ``train()``). ``forward(audio)`` is the audio embedding
    (:meth:`CrossModalNet.embed_audio`), so DDP sees the trained computation."""

    def __init__(self, net: CrossModalNet):
        super().__init__()
        self.net = net
        for m in self.frozen():
            m.requires_grad_(False)

    def frozen(self) -> tuple[nn.Module, ...]:
        return self.net.sheet_encoder, self.net.sheet_head, self.net.cca

    def train(self, mode: bool = True) -> Student:
        super().train(mode)
        for m in self.frozen():
            m.eval()
        return self

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net.embed_audio(audio)


def make_student(teacher: CrossModalNet, filters: tuple[int, ...], stem: str) -> CrossModalNet:
    """A fresh audio pathway of the student architecture with the teacher's sheet pathway and CCA layer."""
    try:
        net = CrossModalNet(teacher.audio_frames, teacher.cca.dim, audio_filters=filters, audio_stem=stem)
    except ValueError as e:
        raise UserError(f"student architecture: {e}") from None
    for name in ("sheet_encoder", "sheet_head", "cca"):
        getattr(net, name).load_state_dict(getattr(teacher, name).state_dict())
    return net


def train_step(
    model: nn.Module,
    teacher: CrossModalNet,
    opt: torch.optim.Optimizer,
    audio: torch.Tensor,
    sheet: torch.Tensor,
    cfg: DistillConfig,
) -> float:
    """One optimisation step of the student (``model``: a :class:`Student`, maybe DDP-wrapped) on a
    batch of pairs; the teacher gives the targets. Returns the loss."""
    model.train()
    with torch.no_grad():
        target_audio, target_sheet = teacher.embed_audio(audio), teacher.embed_sheet(sheet)
    loss = distill_loss(model(audio), target_audio, target_sheet, cfg.tau, cfg.cos_weight, cfg.nce_weight)
    return optimise(opt, loss)


class Distillation(Finetuning):
    """Fine-tuning's validation, best checkpoint and refinement restarts on the student's network;
    the trained ``model`` is its :class:`Student` wrapper, the step :func:`train_step`."""

    cfg: DistillConfig

    def __init__(
        self,
        cfg: DistillConfig,
        student: Student,
        teacher: CrossModalNet,
        teacher_audio: np.ndarray,
        data: PairData,
        out: Path,
        device: torch.device,
        rank: int,
        log: Callable[[str], None],
    ):
        super().__init__(cfg, student.net, data, out, device, rank, log)
        self.model, self.teacher, self.teacher_audio = student, teacher, teacher_audio

    def step(self, model: nn.Module, opt: torch.optim.Optimizer, n: int, rng: np.random.Generator) -> float:
        audio, sheet = self.data.batches(n, rng, self.device)
        return train_step(model, self.teacher, opt, audio, sheet, self.cfg)

    def validate(self) -> dict[str, float]:
        return validate(self.net, self.teacher_audio, self.data, self.cfg.audio_frames, self.device)


def validate(
    net: CrossModalNet, teacher_audio: np.ndarray, data: PairData, frames: int, device: torch.device
) -> dict[str, float]:
    """Fine-tuning's validation columns and ``val_cos_teacher`` (mean cosine to the teacher's audio
    embeddings ``teacher_audio`` of the validation pairs)."""
    a, s = embed_pairs(net, data.valid, data.val_idx, frames, device)
    return {**retrieval_metrics(a, s), "val_cos_teacher": float(np.mean(np.sum(a * teacher_audio, axis=1)))}


def audio_mmacs(net: CrossModalNet) -> float:
    """Million multiply-adds of the audio encoder per window."""
    return round(multiply_adds(net.audio_encoder, audio_input_shape(net.audio_frames)) / 1e6, 1)


def check_teacher(out: Path, teacher: CrossModalNet) -> None:
    """A resumed run must keep its teacher: the frozen sheet pathway and CCA layer in ``state.pt``
    must be the teacher's."""
    path = out / "state.pt"
    if not path.is_file():
        return  # fit says there is nothing to resume
    saved = torch.load(str(path), map_location="cpu", weights_only=False)["model"]
    mine = {
        k: v
        for k, v in teacher.state_dict().items()
        if k.split(".")[0] in ("sheet_encoder", "sheet_head", "cca")
    }
    if any(not torch.equal(saved[f"net.{k}"].cpu(), v.cpu()) for k, v in mine.items()):
        raise UserError(f"{out}: the run was started with another teacher than the one given")


def run(
    cfg: DistillConfig,
    corpus_dir: str | Path,
    out_dir: str | Path,
    teacher_path: str | Path,
    seed: int = 0,
    resume: bool = False,
    device_name: str | None = None,
    preset: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Distil the teacher's audio pathway into the student architecture; returns the summary."""
    out = Path(out_dir)
    device, rank, rng = start(seed, device_name)
    teacher_file = find_checkpoint(teacher_path)
    teacher = channels_last_net(load_net(teacher_file).to(device)).eval()
    teacher.requires_grad_(False)
    if resume:
        check_teacher(out, teacher)
    cfg = dataclasses.replace(cfg, audio_frames=teacher.audio_frames)
    data = PairData.load(cfg, corpus_dir, "distill", log)
    net = make_student(teacher, tuple(cfg.filters), cfg.stem).to(device)
    net = channels_last_net(net)  # see trainer.common.channels_last
    student = Student(net)

    teacher_audio, teacher_sheet = embed_pairs(teacher, data.valid, data.val_idx, cfg.audio_frames, device)
    teacher_val = retrieval_metrics(teacher_audio, teacher_sheet)
    cost = {"teacher": audio_mmacs(teacher), "student": audio_mmacs(net)}
    tc, sc = teacher.config, net.config
    log(
        f"distill: teacher {teacher_file} ({tc['audio_filters']}, {tc['audio_stem']}, {cost['teacher']} M "
        f"multiply-adds per window): val a2s MRR {teacher_val['val_MRR']:.4f}; student "
        f"{sc['audio_filters']}, {sc['audio_stem']}: {cost['student']} M"
    )
    config = {
        "title": "distill",
        "seed": seed,
        "corpus": str(corpus_dir),
        "preset": preset,
        "teacher": str(teacher_file),
        "train_pairs": len(data.train),
        "val_pairs": len(data.val_idx),
        **dataclasses.asdict(cfg),
    }
    method = Distillation(cfg, student, teacher, teacher_audio, data, out, device, rank, log)
    done = fit(method, staged_schedule(cfg, "distill"), out, config, rng, device, resume=resume, log=log)

    summary: dict[str, Any] = {}
    if rank == 0:
        final = load_checkpoint(out / "best.pt", map_location=device)
        val = validate(final, teacher_audio, data, cfg.audio_frames, device)
        summary = {
            "title": "distill",
            "preset": preset,
            "corpus": str(Path(corpus_dir).resolve()),
            "seed": seed,
            "git_commit": git_commit(),
            "teacher": str(teacher_file.resolve()),
            "teacher_architecture": teacher.config,
            "architecture": final.config,
            "audio_mmac_per_window": cost,
            "epochs": done.epochs,
            "seconds": round(done.seconds, 1),
            "stopped": done.stopped,
            "best_val_MRR": done.best,
            "val": val,
            "teacher_val": teacher_val,
            "loss": {"cos_weight": cfg.cos_weight, "nce_weight": cfg.nce_weight, "tau": cfg.tau},
            "augment": cfg.augment,
            "train_pairs": len(data.train),
            "val_pairs": len(data.val_idx),
            "audio_frames": cfg.audio_frames,
        }
        save_checkpoint(final, out / "model.pt", summary)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        log(
            f"distill done: student val a2s MRR {val['val_MRR']:.4f} (teacher {teacher_val['val_MRR']:.4f}), "
            f"cosine to the teacher {val['val_cos_teacher']:.4f}; wrote {out / 'model.pt'}"
        )
    D.barrier()
    return summary
