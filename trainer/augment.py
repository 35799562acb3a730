"""Data augmentations for pre-training (REFERENCE "Augmentations") and fine-tuning, batched in torch.

Sheet (network space: float (B, 1, 80, 100), ink = 1, so zero fill = white paper), via kornia
where it has the transform:

====================  ====  ==========================================================
transform             p     parameters
====================  ====  ==========================================================
x/y shift             .65   up to 10 % of the width (= 20 px of the 200 px window), 5 % of height
scale                 .45   0.9 - 1.1
rotation              .35   +-4 degrees
Perlin noise          .2    gradient noise on a 4 x 5 lattice, amplitude 0.05 - 0.3 (own code)
small elastic         .2    kornia elastic, kernel 21, sigma 4, alpha 0.35 (~1 px local wobble)
large elastic         .2    kornia elastic, kernel 63, sigma 16, alpha 3 (~2 px smooth warps)
Gaussian noise        .25   std 0.05
blur                  .25   Gaussian, kernel 5, sigma 0.3 - 1.2
====================  ====  ==========================================================

The elastic strengths were chosen by looking at real windows (alpha 1 / 6, tried first, turned
noteheads and staff lines into unreadable waves; 0.35 / 3 keep the music legible).

Audio: the corpus stores contract spectrograms (level-normalised, log10(1 + x)), not waveforms,
so the waveform augmentations are done in the *linear magnitude* spectrogram domain: invert
log10(1 + x), apply, re-log. An input is a context excerpt (B, 1, 92, W) with W >= F (the loader
cuts W = 2 F frames around the anchor), the output is the (B, 1, 92, F) network excerpt:

====================  ====  ==========================================================
transform             p     parameters
====================  ====  ==========================================================
time stretch          .4    rate 0.5 - 1.8 (resampling of the time axis around the centre)
time shift            .5    centre moves by up to 30 % of F (>= 70 % overlap kept)
gain                  .5    +-24 dB (a factor on the level-normalised magnitudes: the serving
                            normaliser removes most level changes; this covers what it leaves)
Gaussian noise        .4    |N(0, s)| per bin, SNR 5 - 40 dB against the excerpt's mean magnitude
7-band EQ             .3    +-10 dB at 7 log-spaced band centres, linearly interpolated over bins
time mask             .5    a run of up to 20 % of the frames set to silence
frequency mask        .35   a run of up to 20 % of the bins set to silence
polarity flip         .5    a NO-OP here: a sign flip of the waveform leaves magnitudes unchanged,
                            so on magnitude spectrograms it is the identity (kept for the record)
====================  ====  ==========================================================

Fine-tuning (REFERENCE "Fine-tuning"): sheet scale 0.95 - 1.05 and vertical system shift +-5 px
(of 160); audio tempo 0.9 - 1.1 by time stretch and onset shift +-1 frame. Horizontal +-5 px
shifts are done by the loader when it cuts the sheet window. With ``FinetuneConfig.augment =
"world"`` fine-tuning also degrades both sides as real use does: scans and phone photos
of the pages (:class:`SheetScanAugment`) and a room, a microphone and noise on the audio
(:class:`AudioWorldAugment`); their tables are in the class docstrings.

All randomness comes from torch's global generator (seed it).
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------- sheet


def fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(
    b: int, h: int, w: int, cells: tuple[int, int] = (4, 5), device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Classic 2-D Perlin gradient noise, (b, 1, h, w), values roughly in [-0.7, 0.7]."""
    ch, cw = cells
    ang = torch.rand(b, ch + 1, cw + 1, device=device) * (2 * math.pi)
    gx, gy = torch.cos(ang), torch.sin(ang)
    ys = torch.arange(h, device=device, dtype=torch.float32) * (ch / h)
    xs = torch.arange(w, device=device, dtype=torch.float32) * (cw / w)
    yi, xi = ys.floor().long(), xs.floor().long()
    yf, xf = (ys - yi)[:, None], (xs - xi)[None, :]

    def corner(dy: int, dx: int) -> torch.Tensor:
        gxc = gx[:, yi + dy][:, :, xi + dx]
        gyc = gy[:, yi + dy][:, :, xi + dx]
        return gxc * (xf - dx) + gyc * (yf - dy)

    u, v = fade(xf), fade(yf)
    top = torch.lerp(corner(0, 0), corner(0, 1), u)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), u)
    return torch.lerp(top, bottom, v)[:, None]


class PerlinNoise(nn.Module):
    """Adds Perlin noise of random amplitude to a random subset of the batch (prob ``p``)."""

    def __init__(self, p: float = 0.2, amplitude: tuple[float, float] = (0.05, 0.3)):
        super().__init__()
        self.p, self.amplitude = p, amplitude

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        sel = torch.rand(b, device=x.device) < self.p
        if not sel.any():
            return x
        n = int(sel.sum())
        lo, hi = self.amplitude
        amp = torch.rand(n, 1, 1, 1, device=x.device) * (hi - lo) + lo
        out = x.clone()
        out[sel] = x[sel] + amp * perlin_noise(n, h, w, device=x.device)
        return out


class SheetAugment(nn.Module):
    """The sheet pre-training augmentations (table in the module docstring); output clamped to [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = nn.Sequential(
            K.RandomAffine(degrees=0.0, translate=(0.1, 0.05), p=0.65),
            K.RandomAffine(degrees=0.0, scale=(0.9, 1.1), p=0.45),
            K.RandomRotation(degrees=4.0, p=0.35),
            K.RandomElasticTransform(kernel_size=(21, 21), sigma=(4.0, 4.0), alpha=(0.35, 0.35), p=0.2),
            K.RandomElasticTransform(kernel_size=(63, 63), sigma=(16.0, 16.0), alpha=(3.0, 3.0), p=0.2),
            PerlinNoise(p=0.2),
            K.RandomGaussianNoise(std=0.05, p=0.25),
            K.RandomGaussianBlur((5, 5), sigma=(0.3, 1.2), p=0.25),
        )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops(x).clamp_(0.0, 1.0)


class SheetFinetuneAugment(nn.Module):
    """Fine-tuning sheet augmentation: scale 0.95 - 1.05, vertical shift +-5 px of 160."""

    def __init__(self) -> None:
        super().__init__()
        self.op = K.RandomAffine(degrees=0.0, translate=(0.0, 5.0 / 160.0), scale=(0.95, 1.05), p=1.0)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x).clamp_(0.0, 1.0)


class SheetScanAugment(nn.Module):
    """Scan and phone-photo degradations for fine-tuning (``FinetuneConfig.augment = "world"``),
    applied after :class:`SheetFinetuneAugment`, in network space (ink = 1, paper = 0):

    ======================  ====  ===================================================
    transform               p     parameters
    ======================  ====  ===================================================
    skew                    .4    rotation +-1.5 degrees
    resolution              .4    down- and up-sampled by 0.5 - 0.9 (100 - 300 dpi scans)
    stroke weight           .25   ink dilated by one pixel at half strength (bolder engraving)
    faded ink               .3    ink x 0.7 - 1.0
    small elastic           .2    kornia elastic, kernel 21, sigma 4, alpha 0.35 (paper warp)
    uneven light            .3    Perlin noise, amplitude 0.03 - 0.15
    blur                    .4    Gaussian, kernel 5, sigma 0.3 - 1.0 (focus)
    Gaussian noise          .3    std 0.03
    JPEG                    .3    quality 30 - 90
    ======================  ====  ===================================================
    """

    def __init__(self) -> None:
        super().__init__()
        self.skew = K.RandomRotation(degrees=1.5, p=0.4)
        self.elastic = K.RandomElasticTransform(
            kernel_size=(21, 21), sigma=(4.0, 4.0), alpha=(0.35, 0.35), p=0.2
        )
        self.light = PerlinNoise(p=0.3, amplitude=(0.03, 0.15))
        self.blur = K.RandomGaussianBlur((5, 5), sigma=(0.3, 1.0), p=0.4)
        self.noise = K.RandomGaussianNoise(std=0.03, p=0.3)
        self.jpeg = K.RandomJPEG(jpeg_quality=(30.0, 90.0), p=1.0)
        self.p_resolution, self.resolution = 0.4, (0.5, 0.9)
        self.p_weight, self.p_fade, self.fade = 0.25, 0.3, (0.7, 1.0)
        self.p_jpeg = 0.3

    def _resolution(self, x: torch.Tensor) -> torch.Tensor:
        sel = _select(x.shape[0], self.p_resolution, x.device)
        if not sel.any():
            return x
        lo, hi = self.resolution
        f = float(torch.rand(()) * (hi - lo) + lo)  # one factor per batch (interpolate takes one size)
        h, w = x.shape[-2:]
        small = F.interpolate(x[sel], size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
        out = x.clone()
        out[sel] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        return out

    def _weight_and_fade(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        bold = torch.maximum(x, 0.5 * F.max_pool2d(x, 3, stride=1, padding=1))
        x = torch.where(_select(b, self.p_weight, x.device)[:, None, None, None], bold, x)
        lo, hi = self.fade
        k = torch.where(
            _select(b, self.p_fade, x.device), torch.rand(b, device=x.device) * (hi - lo) + lo, 1.0
        )
        return x * k[:, None, None, None]

    def _jpeg(self, x: torch.Tensor) -> torch.Tensor:
        sel = _select(x.shape[0], self.p_jpeg, x.device)
        if not sel.any():
            return x
        h, w = x.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16  # the codec works on 16 x 16 blocks of an RGB image
        page = 1.0 - F.pad(x[sel], (0, pw, 0, ph)).clamp(0.0, 1.0)
        coded = self.jpeg(page.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)
        out = x.clone()
        out[sel] = 1.0 - coded[..., :h, :w]
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._resolution(self.skew(x))
        x = self.elastic(self._weight_and_fade(x))
        x = self.noise(self.blur(self.light(x))).clamp(0.0, 1.0)
        return self._jpeg(x).clamp_(0.0, 1.0)


# ---------------------------------------------------------------- audio


def to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the contract's log10(1 + x) compression."""
    return torch.pow(10.0, x) - 1.0


def to_log(m: torch.Tensor) -> torch.Tensor:
    return torch.log10(1.0 + m.clamp_min(0.0))


def _select(b: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.rand(b, device=device) < p


def resample_time(x: torch.Tensor, frames: int, rate: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Crop ``frames`` output frames from context excerpts (B, 1, bins, W) centred at W/2 + shift,
    reading the source at ``rate`` frames per output frame (linear interpolation, zero outside)."""
    b, _, bins, w = x.shape
    t = torch.arange(frames, device=x.device, dtype=torch.float32) - (frames - 1) / 2.0
    src = (w - 1) / 2.0 + shift[:, None] + t[None, :] * rate[:, None]  # (B, frames), source frame
    gx = src / (w - 1) * 2 - 1
    gy = torch.linspace(-1, 1, bins, device=x.device)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[None, :, None]), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def centre_crop(x: torch.Tensor, frames: int) -> torch.Tensor:
    w = x.shape[-1]
    if w < frames:
        raise ValueError(f"context excerpt of {w} frames is shorter than the {frames}-frame window")
    s = (w - frames) // 2
    return x[..., s : s + frames]


def _span_mask(b: int, n: int, max_frac: float, device: torch.device) -> torch.Tensor:
    """(B, n) bool: a random run of up to ``max_frac`` * n positions per row."""
    length = (torch.rand(b, device=device) * max_frac * n).long()
    start = (torch.rand(b, device=device) * (n - length + 1).float()).long()
    idx = torch.arange(n, device=device)[None, :]
    return (idx >= start[:, None]) & (idx < (start + length)[:, None])


class AudioAugment(nn.Module):
    """The audio pre-training augmentations (table in the module docstring).

    Input: log-compressed context excerpts (B, 1, 92, W >= frames); output (B, 1, 92, frames).
    """

    def __init__(
        self,
        frames: int,
        stretch: tuple[float, float] = (0.5, 1.8),
        p_stretch: float = 0.4,
        max_shift: float = 0.3,
        p_shift: float = 0.5,
        gain_db: float = 24.0,
        p_gain: float = 0.5,
        snr_db: tuple[float, float] = (5.0, 40.0),
        p_noise: float = 0.4,
        eq_db: float = 10.0,
        eq_bands: int = 7,
        p_eq: float = 0.3,
        time_mask: float = 0.2,
        p_time_mask: float = 0.5,
        freq_mask: float = 0.2,
        p_freq_mask: float = 0.35,
    ):
        super().__init__()
        self.frames = frames
        self.stretch, self.p_stretch = stretch, p_stretch
        self.max_shift, self.p_shift = max_shift, p_shift
        self.gain_db, self.p_gain = gain_db, p_gain
        self.snr_db, self.p_noise = snr_db, p_noise
        self.eq_db, self.eq_bands, self.p_eq = eq_db, eq_bands, p_eq
        self.time_mask, self.p_time_mask = time_mask, p_time_mask
        self.freq_mask, self.p_freq_mask = freq_mask, p_freq_mask

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, bins, _ = x.shape
        dev = x.device
        # time stretch (log-uniform rate) and shift: one resampling of the context excerpt
        lo, hi = math.log(self.stretch[0]), math.log(self.stretch[1])
        rate = torch.where(
            _select(b, self.p_stretch, dev), torch.exp(torch.rand(b, device=dev) * (hi - lo) + lo), 1.0
        )
        shift = (torch.rand(b, device=dev) * 2 - 1) * self.max_shift * self.frames
        shift = torch.where(_select(b, self.p_shift, dev), shift, 0.0)
        m = to_linear(resample_time(x, self.frames, rate, shift))
        # gain
        g = (torch.rand(b, device=dev) * 2 - 1) * self.gain_db
        g = torch.where(_select(b, self.p_gain, dev), g, 0.0)
        m = m * torch.pow(10.0, g / 20.0)[:, None, None, None]
        # EQ: random dB at eq_bands centres, interpolated over the bins
        sel = _select(b, self.p_eq, dev)
        if sel.any():
            knots = (torch.rand(b, 1, self.eq_bands, device=dev) * 2 - 1) * self.eq_db
            curve = F.interpolate(knots, size=bins, mode="linear", align_corners=True)[:, 0]  # (B, bins)
            curve = torch.where(sel[:, None], curve, 0.0)
            m = m * torch.pow(10.0, curve / 20.0)[:, None, :, None]
        # additive noise at a random SNR against the excerpt's mean magnitude
        sel = _select(b, self.p_noise, dev)
        if sel.any():
            snr = torch.rand(b, device=dev) * (self.snr_db[1] - self.snr_db[0]) + self.snr_db[0]
            level = m.mean(dim=(1, 2, 3)).clamp_min(1e-6) * torch.pow(10.0, -snr / 20.0)
            noise = torch.randn_like(m).abs() * (level * sel)[:, None, None, None]
            m = m + noise
        # time and frequency masks (silence)
        tm = _span_mask(b, self.frames, self.time_mask, dev) & _select(b, self.p_time_mask, dev)[:, None]
        fm = _span_mask(b, bins, self.freq_mask, dev) & _select(b, self.p_freq_mask, dev)[:, None]
        keep = ~(tm[:, None, None, :] | fm[:, None, :, None])
        return to_log(m * keep)


DEFAULT_TEMPO = (0.9, 1.1)  #: fine-tuning's time-stretch range (REFERENCE "Fine-tuning")


class AudioFinetuneAugment(nn.Module):
    """Fine-tuning audio augmentation: tempo 0.9 - 1.1 (time stretch; ``tempo``: another range) and
    onset shift +-1 frame."""

    def __init__(
        self, frames: int, tempo: tuple[float, float] = DEFAULT_TEMPO, max_shift_frames: float = 1.0
    ):
        super().__init__()
        if not 0 < tempo[0] <= tempo[1]:
            raise ValueError(f"tempo range must be 0 < lo <= hi, got {tempo}")
        self.frames, self.tempo, self.max_shift = frames, tempo, max_shift_frames

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        lo, hi = self.tempo
        rate = torch.rand(b, device=x.device) * (hi - lo) + lo
        shift = (torch.rand(b, device=x.device) * 2 - 1) * self.max_shift
        return resample_time(x, self.frames, rate, shift)


def room_reverb(m: torch.Tensor, rt60_s: torch.Tensor, wet: torch.Tensor, fps: float) -> torch.Tensor:
    """A room's late reverberation on linear magnitudes (B, 1, bins, W): each bin adds an
    exponentially decaying tail of itself (a one-pole filter along time), decaying faster at high
    frequencies (air absorption: the top bin decays at twice the rate of the lowest)."""
    b, _, bins, w = m.shape
    decay_per_frame = 3.0 / (rt60_s * fps)  # RT60: -60 dB = 10^-3 in amplitude
    slope = 1.0 + torch.linspace(0.0, 1.0, bins, device=m.device)
    a = torch.pow(10.0, -decay_per_frame[:, None] * slope[None, :])[:, None, :]  # (B, 1, bins)
    tail = torch.zeros_like(m[..., 0])
    out = torch.empty_like(m)
    for t in range(w):
        tail = a * tail + (1.0 - a) * m[..., t]
        out[..., t] = m[..., t] + wet[:, None, None] * tail
    return out


class AudioWorldAugment(nn.Module):
    """A performance heard in the world, for fine-tuning (``FinetuneConfig.augment = "world"``): on
    the context excerpt, before :class:`AudioFinetuneAugment` cuts the network excerpt, in the
    linear magnitude domain (log10(1 + x) undone and redone):

    ======================  ====  ===================================================
    transform               p     parameters
    ======================  ====  ===================================================
    room reverb             .5    RT60 0.2 - 1.5 s, wet 0.2 - 1.0 (tail longer at low frequencies)
    microphone / room EQ    .5    +-9 dB at 7 log-spaced band centres
    gain                    .5    +-12 dB
    noise                   .4    |N(0, s)| per bin, SNR 10 - 40 dB against the mean magnitude
    ======================  ====  ===================================================
    """

    def __init__(
        self,
        fps: float,
        p_reverb: float = 0.5,
        rt60_s: tuple[float, float] = (0.2, 1.5),
        wet: tuple[float, float] = (0.2, 1.0),
        p_eq: float = 0.5,
        eq_db: float = 9.0,
        p_gain: float = 0.5,
        gain_db: float = 12.0,
        p_noise: float = 0.4,
        snr_db: tuple[float, float] = (10.0, 40.0),
    ):
        super().__init__()
        self.fps = fps
        self.p_reverb, self.rt60_s, self.wet = p_reverb, rt60_s, wet
        self.p_eq, self.eq_db, self.p_gain, self.gain_db = p_eq, eq_db, p_gain, gain_db
        self.p_noise, self.snr_db = p_noise, snr_db

    def _uniform(self, b: int, lo_hi: tuple[float, float], device: torch.device) -> torch.Tensor:
        return torch.rand(b, device=device) * (lo_hi[1] - lo_hi[0]) + lo_hi[0]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, bins, _ = x.shape
        dev = x.device
        m = to_linear(x)
        wet = torch.where(_select(b, self.p_reverb, dev), self._uniform(b, self.wet, dev), 0.0)
        if bool((wet > 0).any()):
            m = room_reverb(m, self._uniform(b, self.rt60_s, dev), wet, self.fps)
        knots = (torch.rand(b, 1, 7, device=dev) * 2 - 1) * self.eq_db
        curve = F.interpolate(knots, size=bins, mode="linear", align_corners=True)[:, 0]
        curve = torch.where(_select(b, self.p_eq, dev)[:, None], curve, 0.0)
        g = torch.where(_select(b, self.p_gain, dev), (torch.rand(b, device=dev) * 2 - 1) * self.gain_db, 0.0)
        m = m * torch.pow(10.0, (curve[:, None, :, None] + g[:, None, None, None]) / 20.0)
        sel = _select(b, self.p_noise, dev)
        if sel.any():
            snr = self._uniform(b, self.snr_db, dev)
            level = m.mean(dim=(1, 2, 3)).clamp_min(1e-6) * torch.pow(10.0, -snr / 20.0)
            m = m + torch.randn_like(m).abs() * (level * sel)[:, None, None, None]
        return to_log(m)
