"""The feature contract: every number that training and serving must agree on.

This module is the ONE home of the audio front-end parameters, the sheet geometry and the
embedding size. The trainer writes it into every exported model's manifest
(:meth:`Contract.to_dict`), and every serving backend refuses a model whose manifest
contract differs from its own (:meth:`Contract.check_compatible`).

Values follow ``../shared/REFERENCE.md`` (MSMD / Carvalho et al. 2023) unless a comment says
why we differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# --- audio front end (REFERENCE "Audio front end") ---------------------------------------
SAMPLE_RATE = 22050  #: Hz, mono
FPS = 20  #: spectrogram frames per second
FRAME_SIZE = 2048  #: STFT frame (samples), symmetric Hann window
HOP_SIZE = SAMPLE_RATE / FPS  #: 1102.5 samples; frame i is centred on sample int(i * HOP_SIZE)
BANDS_PER_OCTAVE = 16
FMIN = 30.0
FMAX = 6000.0
FREF = 440.0
N_BINS = 92  #: log-frequency bins after merging duplicate filter centres

# Level normalisation (beyond the paper: the published log10(1 + x) of raw magnitudes depends on
# the recording level). Each filterbank frame is divided by a causal exponential moving average
# of the mean band magnitude (time constant LEVEL_TAU_S), floored at LEVEL_FLOOR so silence is
# not amplified, and scaled by LEVEL_REF before log10(1 + x). The estimate is homogeneous in the
# signal gain, so above the floor the normalised spectrogram does not depend on the level.
LEVEL_TAU_S = 2.0
LEVEL_FLOOR = 1e-3  #: mean band magnitude of -88 dBFS white noise; FluidSynth renders at -g 0.6 sit near 0.15
LEVEL_REF = 1.0

# --- excerpt and window sizes -------------------------------------------------------------
AUDIO_WINDOW_CHOICES = (42, 84, 168)  #: 2.1 s / 4.2 s / 8.4 s
AUDIO_WINDOW_FRAMES = 84  #: default (released models use 4.2 s)

SHEET_WINDOW_H = 160  #: px on the unrolled strip
SHEET_WINDOW_W = 200
SHEET_DOWNSCALE = 2  #: window is downscaled by 2 before the network -> 80 x 100
SHEET_NET_H = SHEET_WINDOW_H // SHEET_DOWNSCALE
SHEET_NET_W = SHEET_WINDOW_W // SHEET_DOWNSCALE

#: Render scale of the sheet contract: distance between two staff lines, in px of the unrolled
#: strip. Chosen so that a piano grand-staff system (incl. typical ledger lines) fits the 160 px
#: window height; every page (engraved for training, or scanned at query time) is rescaled so its
#: detected staff-line spacing equals this value.
#: Measured (corpus helper, Verovio 6.4 engravings of 24 random pieces of ../shared/corpora, 327
#: systems, 24 110 noteheads; see BENCHMARKS.md "Corpus"): grand-staff systems span median 14.8 /
#: p90 17.7 / max 21.5 staff spaces from top to bottom staff line; noteheads whose centre lies inside a 160 px band centred
#: on the system: 95.2 % at 8 px, 97.7 % at 7.5 px, 99.2 % at 7 px, 99.8 % at 6.5 px. 7 px keeps
#: 99 % of noteheads (ledger lines included) in the window at the largest legible scale.
STAFF_SPACE_PX = 7.0

EMBED_DIM = 32

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Contract:
    """A serialisable snapshot of the feature contract (stored in model manifests)."""

    version: int = CONTRACT_VERSION
    sample_rate: int = SAMPLE_RATE
    fps: int = FPS
    frame_size: int = FRAME_SIZE
    bands_per_octave: int = BANDS_PER_OCTAVE
    fmin: float = FMIN
    fmax: float = FMAX
    n_bins: int = N_BINS
    level_tau_s: float = LEVEL_TAU_S
    level_floor: float = LEVEL_FLOOR
    level_ref: float = LEVEL_REF
    audio_window_frames: int = AUDIO_WINDOW_FRAMES
    #: frames from the audio window's centre to the music its embedding matches (the model was trained
    #: so; 0: the centre, the paper's); the score follower's lag is half the window less this
    audio_lead_frames: int = 0
    sheet_window: tuple[int, int] = (SHEET_WINDOW_H, SHEET_WINDOW_W)
    sheet_downscale: int = SHEET_DOWNSCALE
    staff_space_px: float = STAFF_SPACE_PX
    embed_dim: int = EMBED_DIM
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON fields (``audio_lead_frames`` only where not 0: the contract of a model without a
        lead is written as it always was)."""
        d = dataclasses.asdict(self)
        d["sheet_window"] = list(self.sheet_window)
        if not self.audio_lead_frames:
            del d["audio_lead_frames"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Contract:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ContractError(f"unknown contract fields: {sorted(unknown)}")
        kw = dict(d)
        if "sheet_window" in kw:
            kw["sheet_window"] = tuple(kw["sheet_window"])
        return cls(**kw)

    def differences(self, other: Contract) -> list[str]:
        """Human-readable list of fields that differ (``extra`` is informational only)."""
        out = []
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"{f.name}: {a!r} != {b!r}")
        return out

    def check_compatible(self, other: Contract, what: str = "model") -> None:
        """Raise :class:`ContractError` naming every differing field."""
        diffs = self.differences(other)
        if diffs:
            raise ContractError(f"{what} was built for another feature contract: " + "; ".join(diffs))


class ContractError(ValueError):
    """A model, engine or library does not match this code's feature contract."""


DEFAULT = Contract()


def with_audio_window(frames: int, lead: int = 0) -> Contract:
    """The default contract with another audio excerpt length (42, 84 or 168 frames) and ``lead``
    (:attr:`Contract.audio_lead_frames`, 0 to half the window)."""
    if frames not in AUDIO_WINDOW_CHOICES:
        raise ContractError(f"audio window must be one of {AUDIO_WINDOW_CHOICES}, got {frames}")
    if not 0 <= lead < frames // 2:
        raise ContractError(f"audio lead must be in [0, {frames // 2}) frames, got {lead}")
    return dataclasses.replace(DEFAULT, audio_window_frames=frames, audio_lead_frames=lead)
