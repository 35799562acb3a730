"""Augmentations: shapes, ranges, the identity when switched off, and what each transform does."""

from __future__ import annotations

import pytest
import torch

from trainer.augment import (
    AudioAugment,
    AudioFinetuneAugment,
    AudioWorldAugment,
    PerlinNoise,
    SheetAugment,
    SheetFinetuneAugment,
    SheetScanAugment,
    centre_crop,
    perlin_noise,
    room_reverb,
    to_linear,
)

OFF = dict(p_stretch=0, p_shift=0, p_gain=0, p_noise=0, p_eq=0, p_time_mask=0, p_freq_mask=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _specs(b: int = 8, w: int = 168) -> torch.Tensor:
    return torch.rand(b, 1, 92, w) * 0.8 + 0.1


def test_audio_augment_switched_off_is_the_centre_crop():
    x = _specs()
    assert torch.allclose(AudioAugment(84, **OFF)(x), centre_crop(x, 84), atol=1e-4)


def test_audio_gain_spans_plus_minus_20_db_and_is_uniform_per_excerpt():
    x = _specs(64)
    aug = AudioAugment(84, **{**OFF, "p_gain": 1.0})
    ratio = to_linear(aug(x)) / to_linear(centre_crop(x, 84))
    db = 20 * torch.log10(ratio.flatten(1))
    assert torch.allclose(db.min(1).values, db.max(1).values, atol=1e-2)  # one gain per excerpt
    assert db.min() < -15 and db.max() > 15 and db.abs().max() <= 24.01


def test_audio_masks_silence_runs_of_at_most_20_percent():
    x = _specs(32)
    t = AudioAugment(84, **{**OFF, "p_time_mask": 1.0})(x)
    silent_frames = (t == 0).all(dim=2).squeeze(1).sum(1)
    assert silent_frames.max() <= int(0.2 * 84) and silent_frames.sum() > 0
    f = AudioAugment(84, **{**OFF, "p_freq_mask": 1.0})(x)
    silent_bins = (f == 0).all(dim=3).squeeze(1).sum(1)
    assert silent_bins.max() <= int(0.2 * 92) and silent_bins.sum() > 0


def test_audio_time_stretch_reads_a_scaled_span_of_the_context():
    # a ramp over time: after stretching by r around the centre, the slope is multiplied by r
    w = 168
    ramp = torch.linspace(0, 1, w).expand(4, 1, 92, w).contiguous() * 0.5
    out = AudioAugment(84, **{**OFF, "p_stretch": 1.0})(ramp)
    slopes = (out[..., 60] - out[..., 20]).mean(dim=(1, 2)) / (ramp[..., 1] - ramp[..., 0]).mean() / 40
    assert ((slopes > 0.49) & (slopes < 1.81)).all() and slopes.std() > 0


def test_audio_outputs_stay_valid_log_magnitudes_with_everything_on():
    out = AudioAugment(84)(_specs(64))
    assert out.shape == (64, 1, 92, 84)
    assert torch.isfinite(out).all() and out.min() >= 0


def test_finetune_augments_shapes():
    assert AudioFinetuneAugment(84)(_specs(4, 106)).shape == (4, 1, 92, 84)
    s = (torch.rand(4, 1, 80, 100) < 0.1).float()
    y = SheetFinetuneAugment()(s)
    assert y.shape == s.shape and 0 <= y.min() and y.max() <= 1


def test_sheet_augment_range_and_blank_page_stays_nearly_blank_without_noise():
    s = (torch.rand(32, 1, 80, 100) < 0.1).float()
    y = SheetAugment()(s)
    assert y.shape == s.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.equal(y, s)
    blank = torch.zeros(16, 1, 80, 100)
    geo = SheetAugment()
    geo.ops = geo.ops[:5]  # shifts, scale, rotation, elastic: zero fill = white paper
    assert geo(blank).abs().max() == 0


def test_perlin_noise_is_smooth_and_bounded():
    n = perlin_noise(2, 80, 100)
    assert n.shape == (2, 1, 80, 100) and n.abs().max() < 1.0
    assert (n[..., 1:] - n[..., :-1]).abs().max() < 0.1  # neighbouring pixels: smooth
    x = torch.full((50, 1, 80, 100), 0.5)
    changed = (PerlinNoise(p=0.2)(x) != 0.5).flatten(1).any(1).float().mean()
    assert 0.02 < changed < 0.5


def test_augmentations_are_deterministic_under_a_seed():
    x = _specs(4)
    torch.manual_seed(3)
    a = AudioAugment(84)(x)
    torch.manual_seed(3)
    assert torch.equal(a, AudioAugment(84)(x))


def test_room_reverb_adds_a_decaying_tail_longer_at_low_frequencies():
    m = torch.zeros(1, 1, 92, 60)
    m[..., 10] = 1.0  # one click
    out = room_reverb(m, torch.tensor([1.0]), torch.tensor([1.0]), fps=20)
    assert torch.equal(out[..., :10], m[..., :10])  # causal
    tail = out[0, 0, :, 11:]
    assert (tail[:, 1:] <= tail[:, :-1] + 1e-7).all() and (tail > 0).all()  # decays, never negative
    assert tail[0, 20] > tail[-1, 20] > 0  # the lowest bin rings longer than the highest
    half = out[0, 0, 0, 11:] / out[0, 0, 0, 11]
    assert float(half[6]) == pytest.approx(10 ** (-3 * 0.3), rel=0.05)  # RT60 1 s: -18 dB after 0.3 s


def test_world_audio_augment_keeps_shapes_and_valid_log_magnitudes():
    x = _specs(16, 105)
    y = AudioWorldAugment(20.0, p_reverb=1, p_eq=1, p_gain=1, p_noise=1)(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and (y >= 0).all() and not torch.equal(x, y)
    off = AudioWorldAugment(20.0, p_reverb=0, p_eq=0, p_gain=0, p_noise=0)(x)
    assert torch.allclose(off, x, atol=1e-5)


def test_scan_augment_keeps_ink_in_range_and_a_blank_page_nearly_blank():
    x = torch.zeros(32, 1, 80, 100)
    x[:, :, 20:22, :] = 1.0  # a staff line
    y = SheetScanAugment()(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(y[:, :, 40:70].mean()) < 0.08  # paper stays paper (noise, light and JPEG are small)
    assert float(y[:, :, 18:24].mean()) > 0.15  # the line survives


def test_finetune_world_augmentation_is_a_preset_option():
    import dataclasses

    import numpy as np

    from trainer.finetune import PairBatches
    from trainer.presets import get

    class Pairs:  # the two batch cutters PairBatches uses, on random data
        def __len__(self):
            return 10

        def sheet_batch(self, idx, jitter, rng):
            return np.random.default_rng(0).random((len(idx), 1, 80, 100), dtype=np.float32)

        def audio_batch(self, idx, width):
            return np.random.default_rng(1).random((len(idx), 1, 92, width), dtype=np.float32)

    for aug in ("paper", "world"):
        cfg = dataclasses.replace(get("cpu").finetune, augment=aug)
        a, s = PairBatches(cfg, Pairs())(4, np.random.default_rng(0), torch.device("cpu"))  # type: ignore[arg-type]
        assert a.shape == (4, 1, 92, cfg.audio_frames) and s.shape == (4, 1, 80, 100)
    with pytest.raises(Exception, match="augmentation"):
        PairBatches(dataclasses.replace(get("cpu").finetune, augment="nope"), Pairs())  # type: ignore[arg-type]


def test_a_wider_finetune_tempo_range_reads_the_context_it_is_given():
    """``trainer/run.py finetune --tempo-range 0.6,1.6``: the excerpt's slope (frames of context read
    per output frame) spans the range, the context widens to hold the fastest reading, and the
    default keeps the paper's 0.9 - 1.1 on its 1.25x context."""
    import argparse
    import dataclasses

    from trainer import presets
    from trainer.commands.finetune import finetune_config, tempo_range
    from trainer.data import PairSet
    from trainer.finetune import PairBatches

    torch.manual_seed(0)
    w = 140
    ramp = torch.linspace(0, 1, w).expand(256, 1, 92, w).contiguous() * 0.5
    out = AudioFinetuneAugment(84, tempo=(0.6, 1.6))(ramp)
    slopes = (out[..., 60] - out[..., 20]).mean(dim=(1, 2)) / (ramp[..., 1] - ramp[..., 0]).mean() / 40
    assert 0.59 < float(slopes.min()) < 0.7 and 1.5 < float(slopes.max()) < 1.61
    assert tempo_range("0.6,1.6") == (0.6, 1.6)
    for bad in ("1.6,0.6", "0,1", "0.5", "a,b", "0.5,2.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            tempo_range(bad)
    base = presets.get("cpu")
    args = argparse.Namespace(
        max_epochs=None, time_budget=None, refine_budget=None, refine_max_epochs=None, augment=None
    )
    assert finetune_config(base, args).tempo_range == (0.9, 1.1)
    wide = finetune_config(base, argparse.Namespace(**vars(args), tempo_range=(0.6, 1.6)))
    assert wide.tempo_range == (0.6, 1.6)
    pairs = PairSet(piece_ids=["p"])
    assert PairBatches(finetune_config(base, args), pairs).width == 106  # 84 x 1.25, as before
    assert PairBatches(wide, pairs).width == 140  # 84 x 1.65: the fastest reading stays inside
    with pytest.raises(ValueError):
        AudioFinetuneAugment(84, tempo=(1.2, 1.1))
    assert dataclasses.asdict(wide)["tempo_range"] == (0.6, 1.6)  # recorded in the run's config
