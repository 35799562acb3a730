"""Cross-modal fine-tuning: ``trainer/run.py finetune [--init-audio RUN] [--init-sheet RUN]``.

The network (:class:`scoreid.models.CrossModalNet`) is trained on aligned (audio excerpt, sheet
window) pairs of the training split, condition "same", with the symmetric hinge ranking loss over
all in-batch negatives (margin 0.6, cosine similarity; :func:`trainer.losses.ranking_loss`). The
CCA layer uses batch statistics in training. Fine-tuning augmentation: sheet window +-5 px
horizontally (cut by the loader), scale 0.95-1.05 and +-5 px vertically; audio tempo 0.9-1.1 and
+-1 frame (:mod:`trainer.augment`).

Schedule (run by :func:`trainer.loop.fit`): Adam; LR halved when the validation metric
(audio->sheet MRR on ``val_size`` evenly sampled valid-split pairs) has not improved for
``lr_patience`` epochs; early stop after ``early_stop`` such epochs. Then ``refine_rounds``
refinement rounds, each restarting from the best checkpoint with the LR x ``refine_lr_factor``
(cumulative). Finally the CCA layer is refitted on
``cca_refit_pairs`` training pairs (no augmentation, eval mode) and the network is validated again.

Options (``FinetuneConfig``): ``loss="contrastive"`` trains with the symmetric InfoNCE loss
(:func:`trainer.losses.contrastive_loss`) instead of the hinge; ``cca_in_training=False`` leaves the
CCA layer out of training (identity) and keeps its after-training refit only if the validation
MRR improves (the ``cpu`` preset does both; RESULTS.md "Fine-tuning objective").

Batch size matters for the CCA layer: with batch statistics it aligns any two batches, so the
in-batch positives look similar even for unrelated features. Measured on independent random
32-d features (``CCALayer`` in training mode, then L2): mean positive cosine 0.86 at batch 40
(ranking loss 0.007, almost no gradient), 0.64 at 64 (0.11), 0.41 at 128 (0.43), 0.31 at 256
(0.61). Hence batch 128 (the paper's) in the ``cpu`` and ``gpu`` presets; the ``smoke`` preset's
40 only exercises the code.

Run directory: ``best.pt`` (best so far), ``model.pt`` (final, CCA refitted; what
``trainer/run.py export`` takes), ``state.pt`` (for ``--resume``), ``metrics.{csv,json,png}``,
``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scoreid import contract as C
from scoreid.errors import UserError
from scoreid.inference import git_commit
from scoreid.models import CrossModalNet, load_checkpoint, save_checkpoint
from scoreid.models.cca import CCALayer
from trainer import distributed as D
from trainer.augment import AudioFinetuneAugment, AudioWorldAugment, SheetFinetuneAugment, SheetScanAugment
from trainer.common import channels_last, channels_last_net, load_net
from trainer.data import PairSet, context_frames, open_corpus
from trainer.loop import Method, Schedule, Stage, fit, optimise, start
from trainer.losses import TAU_FINETUNE, contrastive_loss, ranking_loss
from trainer.metrics import both_directions
from trainer.presets import DistillConfig, FinetuneConfig
from trainer.pretrain import load_encoder


class PairBatches:
    """Augmented training batches of aligned pairs (fine-tuning's, and distillation's alike)."""

    def __init__(self, cfg: FinetuneConfig | DistillConfig, pairs: PairSet):
        self.cfg, self.pairs = cfg, pairs
        hi = cfg.tempo_range[1]
        self.width = context_frames(cfg.audio_frames, max(cfg.context_factor, hi + 0.05))
        audio_aug: nn.Module = AudioFinetuneAugment(cfg.audio_frames, tempo=cfg.tempo_range)
        sheet_aug: nn.Module = SheetFinetuneAugment()
        if cfg.augment == "world":
            audio_aug = nn.Sequential(AudioWorldAugment(C.FPS), audio_aug)
            sheet_aug = nn.Sequential(sheet_aug, SheetScanAugment())
        elif cfg.augment != "paper":
            raise UserError(f"unknown fine-tuning augmentation {cfg.augment!r} (paper or world)")
        self.audio_aug, self.sheet_aug = audio_aug, sheet_aug

    def __call__(
        self, n: int, rng: np.random.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = rng.integers(0, len(self.pairs), size=n)
        sheet = torch.from_numpy(self.pairs.sheet_batch(idx, self.cfg.sheet_jitter_px, rng))
        audio = torch.from_numpy(self.pairs.audio_batch(idx, self.width))
        return channels_last(self.audio_aug(audio).to(device)), channels_last(
            self.sheet_aug(sheet).to(device)
        )


@dataclass
class PairData:
    """A run's pairs: training batches, the valid split and its evenly sampled validation pairs."""

    train: PairSet
    valid: PairSet
    val_idx: np.ndarray
    batches: PairBatches

    @classmethod
    def load(
        cls,
        cfg: FinetuneConfig | DistillConfig,
        corpus_dir: str | Path,
        title: str,
        log: Callable[[str], None],
    ) -> PairData:
        corpus = open_corpus(corpus_dir)
        train = PairSet.from_corpus(corpus, "train", "same").require("the train split")
        valid = PairSet.from_corpus(corpus, "valid", "same").require("the valid split")
        train.audio_lead = valid.audio_lead = int(getattr(cfg, "audio_lead_frames", 0))
        val_idx = valid.evenly(cfg.val_size)
        log(
            f"{title}: {len(train)} training pairs ({len(train.piece_ids)} pieces), "
            f"{len(val_idx)} validation pairs"
        )
        return cls(train, valid, val_idx, PairBatches(cfg, train))


def load_finetuned(path: str | Path, audio_frames: int) -> CrossModalNet:
    """The whole network of a fine-tuning run (``model.pt`` or its directory), for a warm start."""
    net = load_net(path)
    if net.audio_frames != audio_frames:
        raise UserError(f"{path}: a model for {net.audio_frames} audio frames, expected {audio_frames}")
    return net


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    audio: torch.Tensor,
    sheet: torch.Tensor,
    margin: float,
    loss_name: str = "hinge",
    tau: float = TAU_FINETUNE,
    cca_in_training: bool = True,
) -> float:
    """One optimisation step on a batch of pairs (hinge ranking or contrastive loss); returns the loss."""
    model.train()
    if not cca_in_training:  # the CCA layer in eval mode: its buffers (identity until refitted)
        for m in model.modules():
            if isinstance(m, CCALayer):
                m.eval()
    a, s = model(audio, sheet)
    loss = contrastive_loss(a, s, tau) if loss_name == "contrastive" else ranking_loss(a, s, margin)
    return optimise(opt, loss)


@torch.no_grad()
def embed_pairs(
    net: CrossModalNet,
    pairs: PairSet,
    idx: np.ndarray,
    frames: int,
    device: torch.device,
    pre_cca: bool = False,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode embeddings of the given pairs (pre-CCA features with ``pre_cca``)."""
    net.eval()
    fa = net.pre_cca_audio if pre_cca else net.embed_audio
    fs = net.pre_cca_sheet if pre_cca else net.embed_sheet
    outa, outs = [], []
    for i in range(0, len(idx), chunk):
        j = idx[i : i + chunk]
        outa.append(fa(torch.from_numpy(pairs.audio_batch(j, frames)).to(device)).cpu().numpy())
        outs.append(fs(torch.from_numpy(pairs.sheet_batch(j)).to(device)).cpu().numpy())
    return np.concatenate(outa), np.concatenate(outs)


def validate(
    net: CrossModalNet, pairs: PairSet, idx: np.ndarray, frames: int, device: torch.device
) -> dict[str, float]:
    return retrieval_metrics(*embed_pairs(net, pairs, idx, frames, device))


def retrieval_metrics(a: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """The validation columns of paired audio and sheet embeddings (audio->sheet MRR drives training)."""
    res = both_directions(a, s)
    a2s, s2a = res["audio_to_sheet"], res["sheet_to_audio"]
    return {"val_MRR": a2s["MRR"], "val_R@1": a2s["R@1"], "val_R@10": a2s["R@10"], "val_MRR_s2a": s2a["MRR"]}


def refit_cca(net: CrossModalNet, pairs: PairSet, n: int, frames: int, device: torch.device) -> list[float]:
    """Refit the CCA layer on ``n`` evenly sampled pairs; returns the canonical correlations."""
    idx = pairs.evenly(n)
    a, s = embed_pairs(net, pairs, idx, frames, device, pre_cca=True)
    corr = net.cca.refit(torch.from_numpy(a).to(device), torch.from_numpy(s).to(device))
    return [round(float(c), 4) for c in corr.cpu()]


class Finetuning(Method):
    """Pairs through the cross-modal network; validated on evenly sampled valid pairs (audio->sheet
    MRR); saves ``best.pt``; each refinement round restarts from it.

    ``net`` is the :class:`CrossModalNet` that is validated and saved; here it is also the trained
    ``model`` (:class:`trainer.distill.Distillation` trains a wrapper of it)."""

    model: nn.Module
    metric_label = "val a2s MRR"

    def __init__(
        self,
        cfg: FinetuneConfig | DistillConfig,
        net: CrossModalNet,
        data: PairData,
        out: Path,
        device: torch.device,
        rank: int,
        log: Callable[[str], None],
    ):
        self.cfg, self.model, self.net, self.data = cfg, net, net, data
        self.out, self.device, self.rank, self.log = out, device, rank, log

    def step(self, model: nn.Module, opt: torch.optim.Optimizer, n: int, rng: np.random.Generator) -> float:
        audio, sheet = self.data.batches(n, rng, self.device)
        c = self.cfg
        assert isinstance(c, FinetuneConfig)
        return train_step(model, opt, audio, sheet, c.margin, c.loss, c.tau, c.cca_in_training)

    def validate(self) -> dict[str, float]:
        return validate(self.net, self.data.valid, self.data.val_idx, self.cfg.audio_frames, self.device)

    def save_best(self, epoch: int, metric: float, path: Path) -> None:
        save_checkpoint(self.net, path, {"epoch": epoch, "val_MRR": metric})

    def restart(self, stage: int, lr: float, best: float) -> None:
        """A refinement round: back to the best checkpoint (the loop lowers the LR)."""
        self.net.load_state_dict(load_checkpoint(self.out / "best.pt", map_location=self.device).state_dict())
        if self.rank == 0:
            self.log(f"refinement round {stage}: from best (val MRR {best:.4f}), lr {lr:.2g}")


def staged_schedule(cfg: FinetuneConfig | DistillConfig, title: str) -> Schedule:
    """The main stage, then ``cfg.refine_rounds`` refinement rounds at LR x ``refine_lr_factor`` ** round."""
    stages = [Stage(f"{title} main", cfg.lr, cfg.max_epochs, cfg.early_stop, cfg.time_budget_s)]
    stages += [
        Stage(
            f"{title} refine {r}",
            cfg.lr * cfg.refine_lr_factor**r,
            cfg.refine_max_epochs,
            cfg.refine_early_stop,
            cfg.refine_budget_s,
        )
        for r in range(1, cfg.refine_rounds + 1)
    ]
    return Schedule(stages, cfg.batch, cfg.samples_per_epoch, cfg.lr_patience, cfg.weight_decay, staged=True)


def run(
    cfg: FinetuneConfig,
    corpus_dir: str | Path,
    out_dir: str | Path,
    init_audio: str | Path | None = None,
    init_sheet: str | Path | None = None,
    seed: int = 0,
    init_model: str | Path | None = None,
    resume: bool = False,
    device_name: str | None = None,
    preset: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fine-tune (+ refinement rounds + CCA refit); returns the summary written to summary.json."""
    out = Path(out_dir)
    device, rank, rng = start(seed, device_name)
    data = PairData.load(cfg, corpus_dir, "finetune", log)
    train, valid, val_idx = data.train, data.valid, data.val_idx

    net = CrossModalNet(audio_frames=cfg.audio_frames, audio_lead=cfg.audio_lead_frames).to(device)
    net = channels_last_net(net)  # see trainer.common.channels_last
    if init_audio:
        net.audio_encoder.load_state_dict(load_encoder(init_audio, "audio", cfg.audio_frames))
    if init_sheet:
        net.sheet_encoder.load_state_dict(load_encoder(init_sheet, "sheet", cfg.audio_frames))
    if init_model:
        warm = load_finetuned(init_model, cfg.audio_frames)
        # another audio architecture (a distilled student): train that one, with this run's lead
        arch = {k: v for k, v in warm.config.items() if k != "audio_lead"}
        if arch != {k: v for k, v in net.config.items() if k != "audio_lead"}:
            net = channels_last_net(
                CrossModalNet.from_config(arch | {"audio_lead": net.audio_lead}).to(device)
            )
        net.load_state_dict(warm.state_dict())
    config = {
        "title": "finetune",
        "seed": seed,
        "corpus": str(corpus_dir),
        "preset": preset,
        "init_audio": str(init_audio or ""),
        "init_sheet": str(init_sheet or ""),
        "init_model": str(init_model or ""),
        "train_pairs": len(train),
        "val_pairs": len(val_idx),
        **dataclasses.asdict(cfg),
    }
    schedule = staged_schedule(cfg, "finetune")
    method = Finetuning(cfg, net, data, out, device, rank, log)
    done = fit(method, schedule, out, config, rng, device, resume=resume, log=log)
    best = done.best

    summary: dict[str, Any] = {}
    if rank == 0:
        final = load_checkpoint(out / "best.pt", map_location=device)
        val_before = validate(final, valid, val_idx, cfg.audio_frames, device)
        corr = refit_cca(final, train, cfg.cca_refit_pairs, cfg.audio_frames, device)
        val = validate(final, valid, val_idx, cfg.audio_frames, device)
        cca = "refit"
        if not cfg.cca_in_training and val["val_MRR"] < val_before["val_MRR"]:
            # trained without CCA and the refit does not help: keep the identity layer it was trained with
            log(
                f"CCA refit lowered val MRR to {val['val_MRR']:.4f} (from {val_before['val_MRR']:.4f}): "
                "kept the identity layer"
            )
            final = load_checkpoint(out / "best.pt", map_location=device)
            val, cca = val_before, "identity (the refit lowered validation MRR)"
        summary = {
            "preset": preset,
            "corpus": str(Path(corpus_dir).resolve()),
            "seed": seed,
            "git_commit": git_commit(),
            "init_audio": str(init_audio or ""),
            "init_sheet": str(init_sheet or ""),
            "init_model": str(init_model or ""),
            "epochs": done.epochs,
            "seconds": round(done.seconds, 1),
            "best_val_MRR_before_refit": best,
            "val_after_refit": val,
            "val_pairs": len(val_idx),
            "cca_refit_pairs": int(min(cfg.cca_refit_pairs, len(train))),
            "cca_correlations": corr if cca == "refit" else [],
            "cca_refit_correlations": corr,
            "cca": cca,
            "val_before_refit": val_before,
            "loss": cfg.loss,
            "train_pairs": len(train),
            "audio_frames": cfg.audio_frames,
        }
        save_checkpoint(final, out / "model.pt", summary)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        log(
            f"finetune done: val a2s MRR {val['val_MRR']:.4f} with the CCA layer {cca} (best before the refit "
            f"{best:.4f}); wrote {out / 'model.pt'}"
        )
    D.barrier()
    return summary
