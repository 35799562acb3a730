"""bench.note_density: performances' notes per second from their MIDI, works binned by density."""

from __future__ import annotations

import json

import mido

from bench.note_density import main, midi_notes


def _midi(path, notes: int) -> None:
    f = mido.MidiFile()
    t = mido.MidiTrack()
    for i in range(notes):
        t.append(mido.Message("note_on", note=60 + i % 12, velocity=64, time=10))
        t.append(mido.Message("note_on", note=60 + i % 12, velocity=0, time=10))  # a note-off
    f.tracks.append(t)
    f.save(path)


def test_sparse_and_dense_works_are_binned_apart(tmp_path, capsys):
    (tmp_path / "rd").mkdir()
    perfs, excerpts = [], []
    for i, (notes, ranks) in enumerate(((20, [2, 2]), (200, [1, 1]), (100, [1, 2]), (40, [2, 1]))):
        _midi(tmp_path / "rd" / f"w{i}.mid", notes)
        perfs.append({"work": f"w{i}", "midi": f"w{i}.mid", "seconds": 10.0})
        excerpts += [
            {"work": f"w{i}", "in_library": True, "size": 9, "length_s": 30.0, "rank": r} for r in ranks
        ]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "set.json").write_text(json.dumps({"performances": perfs}))
    (tmp_path / "run.json").write_text(json.dumps({"sizes": [9], "excerpts": excerpts}))
    assert midi_notes(tmp_path / "rd" / "w1.mid") == 200
    args = ["--data", str(tmp_path / "data"), "--realdev", str(tmp_path / "rd"), "--corpus", str(tmp_path)]
    assert main([str(tmp_path / "run.json"), "--bins", "2", *args]) == 0
    out = capsys.readouterr().out
    assert "| 2.0 – 4.0 | 2 | 4 | 0.25 |" in out and "| 10.0 – 20.0 | 2 | 4 | 0.75 |" in out
