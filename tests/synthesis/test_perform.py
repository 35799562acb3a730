"""Performances: the time map is exact, onsets agree with the audio, options are seeded."""

from __future__ import annotations

import numpy as np
import pytest
from scorefixtures import isolated_onsets, onset_agreement, write_piece

from scoreid import contract as C
from scoreid.audio.spectrogram import spectrogram
from synthesis.engrave import MidiNote, engrave
from synthesis.perform import PerformOptions, TimeMap, _touch, perform


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    return engrave(write_piece(tmp_path_factory.mktemp("score") / "isolated.krn"))


@pytest.mark.parametrize(
    "opts",
    [
        PerformOptions(soundfont="fluidr3"),
        PerformOptions(
            soundfont="timgm6mb",
            tempo_factor=0.85,
            tempo_curve=0.1,
            velocity_jitter=8,
            dynamics=12,
            pedal=True,
            seed=3,
        ),
        PerformOptions(
            soundfont="csound", tempo_factor=1.4, tempo_curve=0.1, reverb_rt60=0.8, snr_db=20, seed=5
        ),
        PerformOptions(
            soundfont="fluidr3",
            program=1,
            chord_spread_ms=20,
            melody_lead_ms=25,
            articulation=0.35,
            pedal=True,
            seed=7,
        ),
    ],
    ids=["plain", "curve-pedal", "shifted", "touch"],
)
def test_onset_frames_agree_with_audio(eng, opts):
    perf = perform(eng.midi_notes, opts)
    spec = spectrogram(perf.audio)
    onsets = isolated_onsets(np.array([n.onset_s for n in eng.notes]))
    assert len(onsets) >= 10
    frames = perf.time_map.to_perf(onsets) * C.FPS
    assert onset_agreement(spec, frames) >= 0.9
    # the check can fail: a timing error of 3 frames is caught
    assert onset_agreement(spec, frames + 3) < 0.5


def test_tempo_factor_and_curve(eng):
    slow = perform(eng.midi_notes, PerformOptions(tempo_factor=0.8))
    fast = perform(eng.midi_notes, PerformOptions(tempo_factor=1.25))
    end = eng.duration_s
    assert slow.time_map.to_perf(end) == pytest.approx(end / 0.8, rel=1e-6)
    assert fast.time_map.to_perf(end) == pytest.approx(end / 1.25, rel=1e-6)
    assert slow.seconds > fast.seconds
    tm = TimeMap.make(60.0, 1.0, 0.1, 5.0, np.random.default_rng(0))
    local = np.diff(tm.score_s) / np.diff(tm.perf_s)
    assert local.min() > 0.6 and local.max() < 1.6 and local.std() > 0.01
    t = np.linspace(0, 60, 101)
    np.testing.assert_allclose(tm.to_score(tm.to_perf(t)), t, atol=1e-9)


def test_seeded_and_deterministic(eng):
    o = PerformOptions(
        soundfont="fluidr3mono",
        tempo_curve=0.1,
        velocity_jitter=8,
        pedal=True,
        seed=1,
        reverb_rt60=0.5,
        snr_db=25,
    )
    a, b = perform(eng.midi_notes, o), perform(eng.midi_notes, o)
    assert a.midi == b.midi and a.audio.tobytes() == b.audio.tobytes()
    c = perform(eng.midi_notes, PerformOptions(**{**o.to_dict(), "seed": 2}))  # type: ignore[arg-type]
    assert c.midi != a.midi


def test_time_map_rejects_non_monotonic():
    with pytest.raises(ValueError):
        TimeMap(np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError):
        TimeMap.make(10.0, 0.0, 0.0, 5.0, np.random.default_rng(0))


def test_touch_moves_notes_within_bounds_and_never_cuts_a_repeated_pitch():
    # two chords of three notes, then the same pitch repeated quickly (legato must not overlap it)
    # (the first onset is not at 0: an onset is never moved before the start)
    notes = [
        MidiNote(60, 0.5, 1.0),
        MidiNote(64, 0.5, 1.0),
        MidiNote(72, 0.5, 1.0),
        MidiNote(62, 1.0, 2.0),
        MidiNote(65, 1.0, 2.0),
        MidiNote(74, 1.0, 2.0),
    ]
    notes += [MidiNote(67, 2.0 + 0.2 * i, 2.2 + 0.2 * i) for i in range(10)]
    onsets = np.array([n.onset_s for n in notes])
    offsets = np.array([n.offset_s for n in notes])
    tm = TimeMap.make(5.0, 1.0, 0.0, 5.0, np.random.default_rng(0))
    plain = _touch(notes, onsets, offsets, PerformOptions(), tm, np.random.default_rng(0))
    np.testing.assert_allclose(plain[0], onsets)
    np.testing.assert_allclose(plain[1], offsets)
    lead = _touch(notes, onsets, offsets, PerformOptions(melody_lead_ms=25), tm, np.random.default_rng(0))
    np.testing.assert_allclose(onsets - lead[0], [0, 0, 0.025, 0, 0, 0.025] + [0] * 10, atol=1e-12)
    o = PerformOptions(chord_spread_ms=20, melody_lead_ms=25, articulation=0.35)
    on, off = _touch(notes, onsets, offsets, o, tm, np.random.default_rng(1))
    assert np.abs(on - onsets).max() <= 0.025 + 2.5 * 0.020 + 1e-9  # within one 50 ms frame
    assert np.abs(on - onsets).std() > 0.005  # the notes really move
    rep = np.arange(6, 16)  # the repeated pitch: each note ends before the next one starts
    assert np.all(off[rep[:-1]] < on[rep[1:]])
    assert not np.allclose((off - on)[3:6], 1.0)  # articulation changed the durations


def test_touch_and_program_change_the_sound_and_stay_seeded(eng):
    o = PerformOptions(soundfont="fluidr3", chord_spread_ms=20, melody_lead_ms=25, articulation=0.3, seed=4)
    a, b = perform(eng.midi_notes, o), perform(eng.midi_notes, o)
    assert a.audio.tobytes() == b.audio.tobytes()
    plain = perform(eng.midi_notes, PerformOptions(soundfont="fluidr3", seed=4))
    assert a.midi != plain.midi
    bright = perform(eng.midi_notes, PerformOptions(soundfont="fluidr3", seed=4, program=1))
    n = min(len(bright.audio), len(plain.audio))
    assert np.abs(bright.audio[:n] - plain.audio[:n]).max() > 1e-3  # another sample set
