"""Presets carry the REFERENCE hyper-parameters where they claim to (gpu = paper scale)."""

from __future__ import annotations

import pytest

from scoreid.errors import UserError
from trainer import presets


def test_gpu_preset_is_the_paper_schedule():
    p = presets.get("gpu")
    a, s, f = p.pretrain_audio, p.pretrain_sheet, p.finetune
    assert (a.batch, a.lr, a.tau, a.samples_per_epoch, a.lr_patience, a.weight_decay) == (
        128,
        1e-3,
        0.6,
        65536,
        15,
        1e-5,
    )
    assert (s.batch, s.lr, s.tau, s.samples_per_epoch, s.lr_patience) == (256, 5e-4, 0.5, 32768, 10)
    assert (f.batch, f.lr, f.margin, f.lr_patience, f.refine_rounds, f.refine_lr_factor) == (
        128,
        4e-4,
        0.6,
        30,
        5,
        0.5,
    )
    assert f.cca_refit_pairs == 25000 and f.audio_frames == 84
    assert (p.eval.n_pairs, p.eval.windows_per_recording, p.eval.k, p.eval.db_stride_px) == (
        2000,
        100,
        25,
        50.0,
    )


def test_cpu_preset_fits_two_hours_of_stage_budgets():
    p = presets.get("cpu")
    budget = p.pretrain_audio.time_budget_s + p.pretrain_sheet.time_budget_s
    budget += p.finetune.time_budget_s + p.finetune.refine_rounds * p.finetune.refine_budget_s
    assert budget <= 5400  # leaves >= 30 min of the 2 h for loading, refit, eval and export
    assert p.finetune.batch >= 128  # the CCA layer needs it (see trainer/finetune.py)
    assert p.threads == 2 and p.eval.n_pairs == 2000


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserError, match="unknown preset"):
        presets.get("tpu")


def test_distillation_runs_on_each_presets_finetuning_schedule():
    for name in presets.PRESETS:
        p = presets.get(name)
        d, f = p.distill, p.finetune
        keys = (
            "batch",
            "lr",
            "samples_per_epoch",
            "max_epochs",
            "early_stop",
            "val_size",
            "refine_rounds",
            "time_budget_s",
            "refine_budget_s",
            "augment",
            "audio_frames",
        )
        assert [getattr(d, k) for k in keys] == [getattr(f, k) for k in keys], name
        assert (d.filters, d.stem, d.cos_weight, d.nce_weight) == ((12, 24, 48, 48), "full", 1.0, 0.1)
        assert p.to_dict()["distill"]["filters"] == (12, 24, 48, 48)
