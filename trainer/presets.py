"""Training presets: every hyper-parameter of a run, in one place, by name.

- ``smoke``: CI scale; the whole pipeline (pre-train both, fine-tune, eval, export) in well under
  3 minutes on the tiny corpus. Numbers it produces only show that the pipeline runs.
- ``cpu``: the shipped model; the whole pipeline within 2 hours on 2 cores. Each stage has a
  wall-clock budget (a single process stops at the first step past it, then validates; pass
  ``--max-epochs N --time-budget 1e9 --refine-budget 1e9`` to reproduce a run exactly).
  Pre-training batches are smaller than the paper's (64; measured: a 128-pair fine-tuning step
  takes ~13 s on one idle core, see BENCHMARKS.md); fine-tuning keeps the paper's 128 (the CCA
  layer's batch statistics need a batch well above the 32 dimensions); learning rates are the
  paper's for pre-training; CCA refit on 10 000 pairs; the seconds curve uses 3 starts and a 0.5 s
  hop. Fine-tuning departs from the paper where a measurement said so (RESULTS.md, "Fine-tuning
  objective"): with ~800 steps instead of the paper's tens of thousands, the symmetric contrastive
  loss (InfoNCE, tau 0.1) without the CCA layer in training, at Adam 1e-3, reached twice the
  validation MRR of the hinge + CCA recipe at 4e-4 after the same 32-48 steps; the CCA layer is
  refitted after training and kept only if it helps. Budget: 1200 + 1200 s pre-training,
  2000 + 400 s fine-tuning (one refinement round), then refit, eval and export.
- ``gpu``: paper scale (REFERENCE "Losses and schedules"): audio pre-training batch 128, Adam 1e-3,
  65 536 samples/epoch, LR halved after 15 epochs without improvement; sheet batch 256, Adam 5e-4,
  32 768 samples/epoch, patience 10; fine-tuning batch 128, Adam 4e-4, patience 30, then 5
  refinement rounds at LR x 0.5 from the best checkpoint; CCA refit on 25 000 training pairs.
  Works under ``torchrun`` (DDP).

Distillation (``distill``, :mod:`trainer.distill`): a smaller audio encoder learns the shipped
network's audio embedding. Each preset distils on its own fine-tuning schedule (batch, LR,
epochs, patience, refinement rounds, budgets, validation pairs, augmentation) with the loss
weights of :mod:`trainer.losses` (``distill_loss``). The student's architecture (``filters``,
``stem``) is part of the config: 12 / 24 / 48 / 48 filters with the paper's first block by default.

Early stopping: a stage ends after ``early_stop`` epochs without a better validation metric.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from scoreid import contract as C
from scoreid.errors import UserError
from trainer.augment import DEFAULT_TEMPO
from trainer.losses import COS_WEIGHT, MARGIN, NCE_WEIGHT, TAU_AUDIO, TAU_FINETUNE, TAU_SHEET


@dataclass
class PretrainConfig:
    modality: str  #: "audio" or "sheet"
    batch: int
    lr: float
    tau: float  #: NT-Xent temperature
    samples_per_epoch: int
    max_epochs: int
    lr_patience: int  #: halve the LR after this many epochs without improvement
    early_stop: int  #: stop after this many epochs without improvement
    val_size: int  #: validation samples (two augmented views each, fixed seed)
    weight_decay: float = 1e-5
    time_budget_s: float | None = None
    audio_frames: int = C.AUDIO_WINDOW_FRAMES
    context_factor: float = 2.0  #: audio context excerpt = factor x frames (room for stretch/shift)


@dataclass
class PairSchedule:
    """The schedule of a run on aligned pairs (fine-tuning, distillation): a main stage, then
    refinement rounds from the best checkpoint (:func:`trainer.finetune.staged_schedule`)."""

    batch: int
    lr: float
    samples_per_epoch: int
    max_epochs: int
    lr_patience: int
    early_stop: int
    val_size: int  #: validation pairs (valid split, condition "same"), evenly sampled
    refine_rounds: int  #: rounds restarting from the best checkpoint with LR x refine_lr_factor
    refine_max_epochs: int
    refine_early_stop: int


@dataclass
class FinetuneConfig(PairSchedule):
    cca_refit_pairs: int  #: training pairs the CCA layer is refitted on after training
    margin: float = MARGIN
    loss: str = "hinge"  #: "hinge" (the paper's ranking loss) or "contrastive" (InfoNCE, trainer.losses)
    tau: float = TAU_FINETUNE  #: temperature of the contrastive loss
    cca_in_training: bool = True  #: CCA layer on batch statistics while training (the paper); False:
    #: trained without it (identity), refitted after training and kept only if validation improves
    weight_decay: float = 0.0
    refine_lr_factor: float = 0.5
    sheet_jitter_px: float = 5.0  #: horizontal system shift of the sheet window
    audio_frames: int = C.AUDIO_WINDOW_FRAMES
    context_factor: float = 1.25  #: audio context for tempo 0.9-1.1 and +-1 frame shift
    #: the time-stretch range of the audio excerpt (uniform; > 1 plays faster); the context widens
    #: to ``hi + 0.05`` times the window where that is more than ``context_factor``
    tempo_range: tuple[float, float] = DEFAULT_TEMPO
    #: frames from the audio window's centre to the music the sheet window shows (0: the centre; more:
    #: nearer the window's end, so the follower extrapolates less to "now"; the model records it)
    audio_lead_frames: int = 0
    time_budget_s: float | None = None
    refine_budget_s: float | None = None  #: per refinement round
    augment: str = "paper"  #: "paper" (REFERENCE's fine-tuning augmentation) or "world" (also scans,
    #: phone photos, rooms, microphones and noise: trainer.augment SheetScanAugment/AudioWorldAugment)


@dataclass
class DistillConfig(PairSchedule):
    """A student audio encoder trained to the teacher's audio embedding (:mod:`trainer.distill`);
    the schedule, batch, validation and augmentation fields are fine-tuning's (:meth:`following`)."""

    filters: tuple[int, ...] = (12, 24, 48, 48)  #: the student's conv filters per VGG block
    stem: str = "full"  #: the student's first block ("full" or "stride2", scoreid.models.encoders)
    cos_weight: float = COS_WEIGHT  #: weight of 1 - cos(student, teacher) audio embedding
    nce_weight: float = NCE_WEIGHT  #: weight of InfoNCE of student audio vs teacher sheet embeddings
    tau: float = TAU_FINETUNE  #: temperature of that InfoNCE
    weight_decay: float = 0.0
    refine_lr_factor: float = 0.5
    sheet_jitter_px: float = 5.0  #: horizontal system shift of the sheet window (as fine-tuning)
    audio_frames: int = C.AUDIO_WINDOW_FRAMES  #: replaced by the teacher's
    context_factor: float = 1.25  #: audio context for tempo 0.9-1.1 and +-1 frame shift
    tempo_range: tuple[float, float] = DEFAULT_TEMPO  #: as fine-tuning (its teacher's, by ``following``)
    time_budget_s: float | None = None
    refine_budget_s: float | None = None  #: per refinement round
    augment: str = "paper"  #: as fine-tuning: "paper" or "world"

    @classmethod
    def following(cls, ft: FinetuneConfig, **kw: Any) -> DistillConfig:
        """The fields both configs have from ``ft`` (its schedule, batch, budgets, validation and
        augmentation; ``tau``, the contrastive temperature), the others default or from ``kw``."""
        shared = {f.name: getattr(ft, f.name) for f in dataclasses.fields(cls) if hasattr(ft, f.name)}
        return cls(**{**shared, **kw})


@dataclass
class EvalConfig:
    n_pairs: int = 2000  #: snippet retrieval: evenly sampled test pairs (always reported)
    windows_per_recording: int = 100  #: piece identification: audio windows over each recording
    k: int = 25  #: neighbours that vote
    db_stride_px: float = 50.0  #: database sheet windows every 50 px of the strip
    curve_seconds: tuple[float, ...] = tuple(float(s) for s in range(2, 31, 2))
    curve_starts: int = 5  #: excerpt start positions per recording for the seconds curve
    curve_hop_frames: int = 5  #: audio window hop inside an excerpt (0.25 s)
    curve_recordings_per_piece: int = 1  #: recordings per piece used for the seconds curve


@dataclass
class Preset:
    name: str
    threads: int | None
    pretrain_audio: PretrainConfig
    pretrain_sheet: PretrainConfig
    finetune: FinetuneConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(init=False)  #: the fine-tuning schedule, :meth:`DistillConfig.following`

    def __post_init__(self) -> None:
        self.distill = DistillConfig.following(self.finetune)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _smoke() -> Preset:
    common = dict(samples_per_epoch=32, max_epochs=2, lr_patience=1, early_stop=2, val_size=32)
    return Preset(
        name="smoke",
        threads=1,
        pretrain_audio=PretrainConfig("audio", batch=16, lr=1e-3, tau=TAU_AUDIO, **common),  # type: ignore[arg-type]
        pretrain_sheet=PretrainConfig("sheet", batch=16, lr=5e-4, tau=TAU_SHEET, **common),  # type: ignore[arg-type]
        finetune=FinetuneConfig(
            batch=40,
            lr=4e-4,
            samples_per_epoch=80,
            max_epochs=2,
            lr_patience=1,
            early_stop=2,
            val_size=64,
            refine_rounds=1,
            refine_max_epochs=1,
            refine_early_stop=1,
            cca_refit_pairs=256,
        ),
        eval=EvalConfig(n_pairs=200, windows_per_recording=20, curve_seconds=(2.0, 4.0, 8.0), curve_starts=2),
    )


def _cpu() -> Preset:
    return Preset(
        name="cpu",
        threads=2,
        pretrain_audio=PretrainConfig(
            "audio",
            batch=64,
            lr=1e-3,
            tau=TAU_AUDIO,
            samples_per_epoch=2048,
            max_epochs=200,
            lr_patience=4,
            early_stop=8,
            val_size=512,
            time_budget_s=1200,
        ),
        pretrain_sheet=PretrainConfig(
            "sheet",
            batch=64,
            lr=5e-4,
            tau=TAU_SHEET,
            samples_per_epoch=2048,
            max_epochs=200,
            lr_patience=4,
            early_stop=8,
            val_size=512,
            time_budget_s=1200,
        ),
        finetune=FinetuneConfig(
            batch=128,
            lr=1e-3,
            samples_per_epoch=2048,
            max_epochs=200,
            lr_patience=4,
            early_stop=8,
            val_size=1000,
            refine_rounds=1,
            refine_max_epochs=50,
            refine_early_stop=3,
            cca_refit_pairs=10000,
            time_budget_s=2000,
            refine_budget_s=400,
            loss="contrastive",
            cca_in_training=False,
        ),
        eval=EvalConfig(curve_starts=3, curve_hop_frames=10),
    )


def _gpu() -> Preset:
    return Preset(
        name="gpu",
        threads=None,
        pretrain_audio=PretrainConfig(
            "audio",
            batch=128,
            lr=1e-3,
            tau=TAU_AUDIO,
            samples_per_epoch=65536,
            max_epochs=500,
            lr_patience=15,
            early_stop=31,
            val_size=4096,
        ),
        pretrain_sheet=PretrainConfig(
            "sheet",
            batch=256,
            lr=5e-4,
            tau=TAU_SHEET,
            samples_per_epoch=32768,
            max_epochs=500,
            lr_patience=10,
            early_stop=21,
            val_size=4096,
        ),
        finetune=FinetuneConfig(
            batch=128,
            lr=4e-4,
            samples_per_epoch=32768,
            max_epochs=1000,
            lr_patience=30,
            early_stop=61,
            val_size=2000,
            refine_rounds=5,
            refine_max_epochs=200,
            refine_early_stop=15,
            cca_refit_pairs=25000,
        ),
    )


PRESETS = {"smoke": _smoke, "cpu": _cpu, "gpu": _gpu}


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
    return PRESETS[name]()
