"""Self-supervised (SimCLR) pre-training of one encoder: ``trainer/run.py pretrain --modality M``.

Samples come from the training split of the corpus AND the unlabeled pool corpora (no alignment
needed): sheet windows at random strip positions, audio context excerpts at random frames. Each
sample is augmented twice (:mod:`trainer.augment`); encoder + :class:`ProjectionHead` map both
views to 32-d and NT-Xent (temperature per modality, :mod:`trainer.losses`) pulls them together.

Validation (early stopping, LR halving on plateau, in :func:`trainer.loop.fit`, which runs the
epochs): a fixed set of ``val_size`` samples from the valid split, two augmented views each drawn
once with a fixed seed; metric = MRR of retrieving view 2 from view 1 (also R@1 and the NT-Xent
loss). Files in the run directory:

- ``encoder.pt``: the best encoder (``{"format": ENCODER_FORMAT, "modality", "audio_frames",
  "state_dict"}``), what ``finetune --init-audio/--init-sheet`` loads;
- ``state.pt``: everything ``--resume`` needs (model, head, optimiser, scheduler, RNG, epoch, log);
- ``metrics.csv`` / ``metrics.json`` / ``metrics.png``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scoreid.errors import UserError
from scoreid.models import ProjectionHead, audio_encoder, sheet_encoder
from trainer.augment import AudioAugment, SheetAugment
from trainer.common import channels_last, channels_last_net
from trainer.data import SnippetSource, context_frames, open_corpus
from trainer.loop import Method, Schedule, Stage, fit, optimise, start
from trainer.losses import nt_xent
from trainer.metrics import summarize, true_ranks
from trainer.presets import PretrainConfig

ENCODER_FORMAT = "scoreid-encoder/1"


class PretrainNet(nn.Module):
    """Encoder + SimCLR projection head."""

    def __init__(self, modality: str, audio_frames: int):
        super().__init__()
        self.encoder = audio_encoder(audio_frames) if modality == "audio" else sheet_encoder()
        self.head = ProjectionHead(self.encoder.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class Views:
    """Draws batches of two augmented views for one modality."""

    def __init__(self, cfg: PretrainConfig, source: SnippetSource):
        self.cfg, self.source = cfg, source
        if cfg.modality == "audio":
            self.aug: nn.Module = AudioAugment(cfg.audio_frames)
            self.width = context_frames(cfg.audio_frames, cfg.context_factor)
        else:
            self.aug = SheetAugment()

    def __call__(
        self, n: int, rng: np.random.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.modality == "audio":
            base = torch.from_numpy(self.source.audio_excerpts(n, self.width, rng))
        else:
            base = torch.from_numpy(self.source.sheet_windows(n, rng))
        return channels_last(self.aug(base).to(device)), channels_last(self.aug(base).to(device))


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, v1: torch.Tensor, v2: torch.Tensor, tau: float
) -> float:
    """One optimisation step of NT-Xent on a batch of view pairs; returns the loss."""
    model.train()
    return optimise(opt, nt_xent(model(v1), model(v2), tau))


@torch.no_grad()
def validate(
    model: nn.Module, v1: torch.Tensor, v2: torch.Tensor, tau: float, chunk: int = 256
) -> dict[str, float]:
    model.eval()
    z1 = torch.cat([model(v1[i : i + chunk]) for i in range(0, len(v1), chunk)])
    z2 = torch.cat([model(v2[i : i + chunk]) for i in range(0, len(v2), chunk)])
    s = summarize(true_ranks(z1.cpu().numpy(), z2.cpu().numpy()))
    return {"val_loss": float(nt_xent(z1, z2, tau).item()), "val_R@1": s["R@1"], "val_MRR": s["MRR"]}


def save_encoder(model: PretrainNet, cfg: PretrainConfig, path: Path, extra: dict[str, Any]) -> None:
    torch.save(
        {
            "format": ENCODER_FORMAT,
            "modality": cfg.modality,
            "audio_frames": cfg.audio_frames,
            "state_dict": model.encoder.state_dict(),
            "extra": extra,
        },
        str(path),
    )


def load_encoder(path: str | Path, modality: str, audio_frames: int) -> dict[str, torch.Tensor]:
    """The encoder state dict of a pre-training run (``encoder.pt`` or its directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "encoder.pt"
    if not p.is_file():
        raise UserError(f"{path}: no pre-trained encoder (expected encoder.pt)")
    payload = torch.load(str(p), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != ENCODER_FORMAT:
        raise UserError(f"{p}: not a pre-trained encoder ({ENCODER_FORMAT})")
    if payload["modality"] != modality:
        raise UserError(f"{p}: a {payload['modality']} encoder, expected {modality}")
    if modality == "audio" and int(payload["audio_frames"]) != audio_frames:
        raise UserError(f"{p}: audio encoder for {payload['audio_frames']} frames, expected {audio_frames}")
    return dict(payload["state_dict"])


class Pretraining(Method):
    """NT-Xent on two augmented views per sample; validated on fixed views; saves the best encoder."""

    best_file = "encoder.pt"

    model: PretrainNet

    def __init__(
        self,
        cfg: PretrainConfig,
        model: PretrainNet,
        views: Views,
        val_views: tuple[torch.Tensor, torch.Tensor],
        out: Path,
        seed: int,
        device: torch.device,
    ):
        self.cfg, self.model, self.views, self.val_views = cfg, model, views, val_views
        self.out, self.seed, self.device = out, seed, device

    def step(self, model: nn.Module, opt: torch.optim.Optimizer, n: int, rng: np.random.Generator) -> float:
        v1, v2 = self.views(n, rng, self.device)
        return train_step(model, opt, v1, v2, self.cfg.tau)

    def validate(self) -> dict[str, float]:
        return validate(self.model, *self.val_views, self.cfg.tau)

    def save_best(self, epoch: int, metric: float, path: Path) -> None:
        extra = {"epoch": epoch, "val_MRR": metric, "seed": self.seed}
        save_encoder(self.model, self.cfg, path, extra)


def run(
    cfg: PretrainConfig,
    corpus_dir: str | Path,
    pool_dirs: Sequence[str | Path],
    out_dir: str | Path,
    seed: int = 0,
    resume: bool = False,
    device_name: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pre-train one encoder; returns a summary (best metric, epochs, files)."""
    device, rank, rng = start(seed, device_name)
    corpus = open_corpus(corpus_dir)
    sources: list[tuple[Any, list[str | None]]] = [(corpus, ["train"])]
    sources += [(open_corpus(p), [None]) for p in pool_dirs]
    source = SnippetSource.from_corpora(sources)
    val_source = SnippetSource.from_corpora([(corpus, ["valid"])])
    if not val_source.strips or not val_source.specs:
        raise UserError(
            f"{corpus_dir}: the valid split has no pieces; pre-training needs it for early stopping"
        )
    views = Views(cfg, source)
    # fixed validation views (their own seed; the training RNG streams are untouched)
    torch_state = torch.get_rng_state()
    torch.manual_seed(seed + 10_000)
    val_views = Views(cfg, val_source)(cfg.val_size, np.random.default_rng(seed + 10_000), device)
    torch.set_rng_state(torch_state)

    model = PretrainNet(cfg.modality, cfg.audio_frames).to(device)
    model = channels_last_net(model)  # see trainer.common.channels_last
    out = Path(out_dir)
    config = {
        "title": f"pretrain {cfg.modality}",
        "seed": seed,
        "corpus": str(corpus_dir),
        "pool": [str(p) for p in pool_dirs],
        **dataclasses.asdict(cfg),
    }
    schedule = Schedule(
        [Stage(f"pretrain {cfg.modality}", cfg.lr, cfg.max_epochs, cfg.early_stop, cfg.time_budget_s)],
        cfg.batch,
        cfg.samples_per_epoch,
        cfg.lr_patience,
        cfg.weight_decay,
    )
    method = Pretraining(cfg, model, views, val_views, out, seed, device)
    done = fit(method, schedule, out, config, rng, device, resume=resume, log=log)
    summary = {
        "best_val_MRR": done.best,
        "epochs": done.epochs,
        "stopped": done.stopped,
        "seconds": round(done.seconds, 1),
        "encoder": str(out / "encoder.pt"),
    }
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        log(f"pretrain {cfg.modality} done: {summary}")
    return summary
