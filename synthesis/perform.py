"""Rendering a "performance" of a score: tempo, tempo curve, dynamics, pedal, touch, room and noise.

``perform(notes, options)`` takes the notes of a score in score time (``engrave.MidiNote``), maps
them to performance time through a :class:`TimeMap` (a global tempo factor times a smooth random
tempo curve), humanises velocities (a smooth dynamics curve plus per-note jitter), optionally adds
sustain-pedal changes and a pianist's touch (chord asynchrony with a leading melody, articulation:
legato and detached notes), writes a MIDI file and synthesises it with FluidSynth (``synthesis.synth``).
For the ``shifted`` test condition it can convolve the audio with a synthetic room impulse response
and add noise at a given SNR.

The time map is piecewise linear between knots every ``TimeMap.STEP_S`` seconds of score time and
is *the* definition of the performance's timing: MIDI events are placed with it, so
``time_map.to_perf(onset)`` is exactly when the synthesised note starts (to the MIDI tick,
~1 ms) — up to the note's asynchrony when ``chord_spread_ms`` / ``melody_lead_ms`` are set (at most
2.5 x spread + lead, well inside one spectrogram frame of 50 ms at the values the corpus uses).
Everything is seeded: same notes and options -> byte-identical audio; the touch options draw from
the random generator only when they are set, so a performance without them is what it was before
they existed.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import fftconvolve

from scoreid import contract as C
from synthesis.engrave import MidiNote
from synthesis.synth import render_midi

TICKS_PER_BEAT = 480
MIDI_TEMPO_US = 500_000  #: 120 bpm -> 960 ticks per second
TICKS_PER_S = TICKS_PER_BEAT * 1_000_000 / MIDI_TEMPO_US


@dataclass(frozen=True)
class PerformOptions:
    soundfont: str = "fluidr3"
    tempo_factor: float = 1.0  #: > 1 plays faster than the score tempo
    tempo_curve: float = 0.0  #: std of the log-tempo curve (0.1 ~ ±10 % tempo drift)
    curve_period_s: float = 6.0  #: score seconds between the curve's random knots
    velocity_jitter: float = 0.0  #: std of per-note velocity noise (MIDI units)
    dynamics: float = 0.0  #: std of the slow dynamics curve (MIDI units)
    pedal: bool = False
    #: touch (0 = none): std of each note's onset offset from the time map (ms, clipped at 2.5 std)
    chord_spread_ms: float = 0.0
    melody_lead_ms: float = 0.0  #: the highest note of a chord sounds this much earlier (ms)
    articulation: float = 0.0  #: std of the log duration factor (a slow curve plus per-note noise)
    program: int = 0  #: General MIDI program (0 acoustic grand, 1 bright grand, …)
    reverb_rt60: float = 0.0  #: seconds; 0 = dry
    snr_db: float | None = None  #: add white noise at this SNR; None = no noise
    seed: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class TimeMap:
    """Monotonic piecewise-linear map score seconds <-> performance seconds."""

    STEP_S = 0.25

    def __init__(self, score_s: np.ndarray, perf_s: np.ndarray):
        self.score_s = np.asarray(score_s, np.float64)
        self.perf_s = np.asarray(perf_s, np.float64)
        if self.score_s.shape != self.perf_s.shape or len(self.score_s) < 2:
            raise ValueError("a time map needs >= 2 matching knots")
        if np.any(np.diff(self.score_s) <= 0) or np.any(np.diff(self.perf_s) <= 0):
            raise ValueError("a time map must be strictly increasing")

    @classmethod
    def make(
        cls, duration_s: float, tempo_factor: float, curve: float, period_s: float, rng: np.random.Generator
    ) -> TimeMap:
        """Global tempo factor times exp(smooth random curve), knots every STEP_S score seconds."""
        if tempo_factor <= 0:
            raise ValueError(f"tempo factor must be positive, got {tempo_factor}")
        end = max(duration_s, cls.STEP_S) + 2.0
        score = np.arange(0.0, end + cls.STEP_S, cls.STEP_S)
        n_knots = int(np.ceil(end / period_s)) + 2
        knots = rng.normal(0.0, curve, n_knots) if curve > 0 else np.zeros(n_knots)
        # cosine interpolation between knots: smooth, bounded by the knot values
        pos = score / period_s
        i = np.floor(pos).astype(int)
        frac = pos - i
        w = (1 - np.cos(np.pi * frac)) / 2
        log_tempo = knots[i] * (1 - w) + knots[i + 1] * w
        tempo = tempo_factor * np.exp(log_tempo[:-1])
        perf = np.concatenate([[0.0], np.cumsum(np.diff(score) / tempo)])
        return cls(score, perf)

    def to_perf(self, t: np.ndarray | float) -> np.ndarray:
        """Performance seconds of score seconds ``t`` (nan beyond the map's end)."""
        return np.asarray(np.interp(t, self.score_s, self.perf_s, right=np.nan))

    def to_score(self, t: np.ndarray | float) -> np.ndarray:
        """Score seconds of performance seconds ``t`` (nan beyond the map's end)."""
        return np.asarray(np.interp(t, self.perf_s, self.score_s, right=np.nan))

    def as_array(self) -> np.ndarray:
        return np.stack([self.score_s, self.perf_s]).astype(np.float64)


@dataclass
class Performance:
    audio: np.ndarray  #: float32 mono at contract.SAMPLE_RATE
    time_map: TimeMap
    midi: bytes
    options: PerformOptions

    @property
    def seconds(self) -> float:
        return len(self.audio) / C.SAMPLE_RATE


def _smooth_curve(times: np.ndarray, std: float, period_s: float, rng: np.random.Generator) -> np.ndarray:
    if std <= 0 or len(times) == 0:
        return np.zeros(len(times))
    n = int(np.ceil((times.max() + 1) / period_s)) + 2
    knots = rng.normal(0.0, std, n)
    return np.interp(times / period_s, np.arange(n), knots)


def _touch(
    notes: list[MidiNote],
    onsets: np.ndarray,
    offsets: np.ndarray,
    opts: PerformOptions,
    time_map: TimeMap,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Performance-time onsets and offsets (s): the time map's, with the touch options applied —
    a leading melody and per-note asynchrony on the onsets, articulation on the durations. A note
    never sounds past the next onset of its own pitch (its note-off would cut that note)."""
    on_s = time_map.to_perf(onsets).astype(np.float64)
    off_s = time_map.to_perf(offsets).astype(np.float64)
    if opts.articulation > 0 and len(notes):
        log_f = _smooth_curve(onsets, opts.articulation, 3.0, rng) + rng.normal(
            0.0, opts.articulation / 2, len(notes)
        )
        off_s = on_s + (off_s - on_s) * np.clip(np.exp(log_f), 0.3, 2.0)
    shift = np.zeros(len(notes))
    if opts.melody_lead_ms > 0 and len(notes):
        key = np.round(onsets * 1000).astype(np.int64)  # a chord: the notes of one score onset (ms)
        order = np.lexsort((-np.array([n.pitch for n in notes]), key))  # by onset, highest pitch first
        first = np.r_[True, key[order][1:] != key[order][:-1]]
        size = np.diff(np.r_[np.flatnonzero(first), len(order)])
        shift[order[first][size > 1]] -= opts.melody_lead_ms / 1000
    if opts.chord_spread_ms > 0 and len(notes):
        sd = opts.chord_spread_ms / 1000
        shift += np.clip(rng.normal(0.0, sd, len(notes)), -2.5 * sd, 2.5 * sd)
    if shift.any():
        on_s = np.maximum(on_s + shift, 0.0)
        off_s = off_s + shift
    if opts.articulation > 0 or shift.any():
        by_pitch: dict[int, list[int]] = {}
        for k in np.argsort(on_s, kind="stable"):
            by_pitch.setdefault(notes[k].pitch, []).append(int(k))
        for ks in by_pitch.values():
            for a, b in zip(ks, ks[1:]):
                off_s[a] = min(off_s[a], on_s[b] - 0.002)
    return on_s, off_s


def performance_midi(
    notes: list[MidiNote], opts: PerformOptions, time_map: TimeMap, rng: np.random.Generator
) -> bytes:
    """A one-track piano MIDI file of ``notes`` placed in performance time."""
    import mido

    onsets = np.array([n.onset_s for n in notes])
    offsets = np.array([n.offset_s for n in notes])
    vel = np.array([n.velocity for n in notes], np.float64)
    vel = vel + _smooth_curve(onsets, opts.dynamics, 4.0, rng)
    if opts.velocity_jitter > 0:
        vel = vel + rng.normal(0.0, opts.velocity_jitter, len(notes))
    vel = np.clip(np.round(vel), 20, 127).astype(int)
    on_s, off_s = _touch(notes, onsets, offsets, opts, time_map, rng)
    on_t = np.round(on_s * TICKS_PER_S).astype(np.int64)
    off_t = np.round(off_s * TICKS_PER_S).astype(np.int64)
    off_t = np.maximum(off_t, on_t + 1)
    # (tick, order, msg): note-offs before pedal before note-ons at the same tick
    events: list[tuple[int, int, int, mido.Message]] = []
    for k, n in enumerate(notes):
        events.append((int(on_t[k]), 2, k, mido.Message("note_on", note=n.pitch, velocity=int(vel[k]))))
        events.append((int(off_t[k]), 0, k, mido.Message("note_off", note=n.pitch, velocity=0)))
    if opts.pedal and len(notes):
        # change the pedal at note onsets roughly every 1-3 score seconds: up just before, down after
        t, end = 0.0, float(offsets.max())
        down = False
        while t < end:
            k = int(np.searchsorted(onsets, t))
            if k >= len(notes):
                break
            tick = int(on_t[k])
            if down:
                events.append((max(0, tick - 10), 1, -1, mido.Message("control_change", control=64, value=0)))
            events.append((tick + 20, 1, -1, mido.Message("control_change", control=64, value=127)))
            down = True
            t = float(onsets[k]) + float(rng.uniform(1.0, 3.0))
        if down:
            last = int(off_t.max())
            events.append((last, 1, -1, mido.Message("control_change", control=64, value=0)))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=MIDI_TEMPO_US, time=0))
    track.append(mido.Message("program_change", program=opts.program, time=0))
    now = 0
    for tick, _, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=TICKS_PER_BEAT))
    mf = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    mf.tracks.append(track)
    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def room_impulse_response(rt60: float, rng: np.random.Generator, sr: int = C.SAMPLE_RATE) -> np.ndarray:
    """A synthetic room: direct sound plus exponentially decaying noise (-60 dB at ``rt60``)."""
    n = max(1, int(rt60 * sr))
    t = np.arange(n) / sr
    tail = rng.normal(0.0, 1.0, n) * 10 ** (-3 * t / rt60)
    tail[: int(0.005 * sr)] = 0.0  # first reflections after 5 ms
    ir = 0.3 * tail / np.sqrt(np.sum(tail**2) + 1e-12)
    ir[0] = 1.0
    return ir.astype(np.float32)


def add_room_and_noise(audio: np.ndarray, opts: PerformOptions, rng: np.random.Generator) -> np.ndarray:
    x = audio.astype(np.float32)
    if opts.reverb_rt60 > 0:
        x = fftconvolve(x, room_impulse_response(opts.reverb_rt60, rng))[: len(x)].astype(np.float32)
    if opts.snr_db is not None:
        rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
        noise = rng.normal(0.0, 1.0, len(x)).astype(np.float32) * rms * 10 ** (-opts.snr_db / 20)
        x = x + noise
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32)


def perform(notes: list[MidiNote], opts: PerformOptions) -> Performance:
    """Synthesise one performance of ``notes`` (score time) -> audio + exact time map."""
    if not notes:
        raise ValueError("no notes to perform")
    rng = np.random.default_rng(opts.seed)
    duration = max(n.offset_s for n in notes)
    tmap = TimeMap.make(duration, opts.tempo_factor, opts.tempo_curve, opts.curve_period_s, rng)
    midi = performance_midi(notes, opts, tmap, rng)
    audio = render_midi(midi, opts.soundfont)
    audio = add_room_and_noise(audio, opts, rng)
    return Performance(audio, tmap, midi, opts)
