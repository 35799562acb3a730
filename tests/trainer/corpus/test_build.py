"""The corpus build end to end on tiny scores: alignment, bad input, determinism, resume, crashes."""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import replace

import numpy as np
import pytest
from scorefixtures import isolated_onsets, onset_agreement, write_piece

from scoreid import contract as C
from scoreid.errors import UserError
from scoreid.sheet.strip import window_at
from trainer import run
from trainer.corpus import build as build_mod
from trainer.corpus.build import build
from trainer.corpus.piece import TRAIN_PROGRAMS, TRAIN_TOUCH, BuildConfig, plan_piece
from trainer.corpus.store import Corpus, piece_path

CFG = BuildConfig(looks=1, performances=1, seed=0)


def make_sources(root):
    src = root / "tiny-src"
    src.mkdir()
    write_piece(src / "alpha.krn", title="Alpha", tempo=120)
    write_piece(src / "beta.krn", title="Beta", tempo=132, variant=1)
    write_piece(src / "gamma.krn", title="Gamma", tempo=108)
    return src


def add_bad_files(src):
    (src / "empty.krn").write_text("")
    (src / "broken.musicxml").write_text("<score-partwise><part")
    (src / "notes.png").write_bytes(b"\x89PNG\r\n not music")


def all_files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    src = make_sources(root)
    res = build([str(src)], root / "data", workers=2, cfg=CFG, progress=False)
    return root, src, res


def test_build_makes_three_splits_with_conditions(built):
    root, _, res = built
    assert sorted(res.built) == ["tiny-src.alpha", "tiny-src.beta", "tiny-src.gamma"] and not res.skipped
    corpus = Corpus(root / "data")
    splits = {s: corpus.ids(s) for s in ("train", "valid", "test", "pool")}
    assert sorted(sum(splits.values(), [])) == corpus.ids()
    assert len(splits["train"]) == 1 and len(splits["valid"]) == 1 and len(splits["test"]) == 1
    for pid in corpus.ids():
        piece = corpus.load(pid)
        conds_r = {r.condition for r in piece.renders}
        conds_p = {p.condition for p in piece.performances}
        if pid in splits["train"]:
            assert conds_r == conds_p == {"same"}
        else:
            assert conds_r == conds_p == {"same", "shifted"}
            shifted = [p for p in piece.performances if p.condition == "shifted"][0]
            assert shifted.soundfont == "csound" and not 0.8 <= shifted.tempo_factor <= 1.25
            assert [r.font for r in piece.renders if r.condition == "shifted"] == ["Petaluma"]
        for r in piece.renders:
            assert r.strip.dtype == np.uint8 and r.strip.shape[0] == C.SHEET_WINDOW_H
            assert all(p.is_file() for p in r.page_paths)
        for p in piece.performances:
            assert p.spec.dtype == np.float16 and p.spec.shape[1] == C.N_BINS
        assert len(piece.pairs(0, 0)) >= 18


def test_aligned_noteheads_lie_on_ink_of_page_and_strip(built):
    root, _, _ = built
    corpus = Corpus(root / "data")
    on_page, on_strip, n = 0, 0, 0
    for pid in corpus.ids():
        piece = corpus.load(pid)
        for r in piece.renders:
            pages = [r.page(i) for i in range(len(r.page_paths))]
            for k in np.flatnonzero(np.isfinite(r.note_x)):
                x, y = r.note_page_xy[k]
                page = pages[int(r.note_page[k])]
                on_page += (
                    page[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 3 : int(round(x)) + 4] < 128
                ).mean() >= 0.4
                sx, sy = r.note_x[k], r.note_y[k]
                win = window_at(r.strip, sx)  # the sheet window the trainer cuts for this note
                c = sx - int(round(sx - C.SHEET_WINDOW_W / 2.0))  # the note's column in the window
                patch = win[int(round(sy)) - 2 : int(round(sy)) + 3, int(round(c)) - 3 : int(round(c)) + 4]
                on_strip += (patch < 128).mean() >= 0.4
                n += 1
    assert n > 50
    assert on_page / n >= 0.98 and on_strip / n >= 0.98


def test_stored_onset_frames_agree_with_stored_spectrogram(built):
    root, _, _ = built
    corpus = Corpus(root / "data")
    for pid in corpus.ids():
        piece = corpus.load(pid)
        iso = np.isin(np.round(piece.note_onset_s, 3), isolated_onsets(piece.note_onset_s))
        for p in piece.performances:
            assert onset_agreement(p.spec, p.note_frame[iso]) >= 0.9, (pid, p.name)


def test_cli_skips_bad_files_with_reasons_and_exit_code(tmp_path, capsys):
    src = make_sources(tmp_path)
    add_bad_files(src)
    rc = run.main(
        [
            "corpus",
            "build",
            "--source",
            str(src),
            "--out",
            str(tmp_path / "d"),
            "--workers",
            "2",
            "--looks",
            "1",
            "--performances",
            "1",
            "--limit",
            "6",
            "--keep-audio",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 3
    assert "3 built" in out and "3 skipped" in out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("skipped ")]
    assert len(lines) == 3
    assert any("empty.krn: empty file" in ln for ln in lines)
    assert any("notes.png: not a score file" in ln for ln in lines)
    assert any("broken.musicxml" in ln for ln in lines)
    corpus = Corpus(tmp_path / "d")
    assert len(corpus.ids()) == 3 and len(corpus.index["skipped"]) == 3
    # --keep-audio: the FLAC of a performance gives back its stored spectrogram
    from scoreid.audio.io import load_audio
    from scoreid.audio.spectrogram import spectrogram

    piece = corpus.load(corpus.ids()[0])
    perf = piece.performances[0]
    audio = load_audio(tmp_path / "d" / "audio" / piece.id / f"{perf.name}.flac")
    np.testing.assert_allclose(spectrogram(audio), perf.spec.astype(np.float32), atol=0.02)


def test_same_inputs_same_bytes_and_resume(built, tmp_path):
    root, src, _ = built
    first = all_files(root / "data")
    again = build([str(src)], tmp_path / "again", workers=1, cfg=CFG, progress=False)
    assert len(again.built) == 3
    assert all_files(tmp_path / "again") == first  # byte-identical, whatever the worker count

    # resume: a finished piece is not rebuilt; a missing one is, identically
    (tmp_path / "again" / "pieces" / "tiny-src.beta.npz").unlink()
    shutil.rmtree(tmp_path / "again" / "pages" / "tiny-src.beta")
    res = build([str(src)], tmp_path / "again", workers=2, cfg=CFG, progress=False)
    assert res.built == ["tiny-src.beta"] and sorted(res.resumed) == ["tiny-src.alpha", "tiny-src.gamma"]
    assert all_files(tmp_path / "again") == first


def test_a_crashing_worker_skips_only_its_piece(tmp_path, monkeypatch):
    src = make_sources(tmp_path)
    real = build_mod.build_piece

    def crash_on_beta(item, *a, **k):
        if item.pid.endswith("beta"):
            os.kill(os.getpid(), signal.SIGSEGV)  # what Verovio does on some files
        return real(item, *a, **k)

    monkeypatch.setattr(build_mod, "build_piece", crash_on_beta)
    res = build([str(src)], tmp_path / "d", workers=2, cfg=CFG, progress=False)
    assert sorted(res.built) == ["tiny-src.alpha", "tiny-src.gamma"]
    assert res.skipped == {"tiny-src.beta": f"worker crashed (exit code {-signal.SIGSEGV})"}


def test_real_dev_works_never_train_and_the_other_splits_stay(built, tmp_path, monkeypatch):
    """A corpus piece matched to a real-dev work is left out when the split puts it in train; the
    other pieces keep their splits; the shipped match list names the known matches."""
    root, src, _ = built
    before = Corpus(root / "data")
    (train_pid,) = before.ids("train")
    (test_pid,) = before.ids("test")
    assert "mozart-piano-sonatas.sonata12-1" in build_mod.realdev_corpus_pids()  # K. 332 / ASAP 12-1
    monkeypatch.setattr(build_mod, "realdev_corpus_pids", lambda: frozenset({train_pid, test_pid}))
    res = build([str(src)], tmp_path / "d", workers=2, cfg=CFG, progress=False)
    after = Corpus(tmp_path / "d")
    assert res.excluded == [train_pid] and train_pid not in after.ids()
    assert after.ids("test") == [test_pid] and after.ids("valid") == before.ids("valid")


def test_pool_excludes_works_of_the_aligned_corpus(built, tmp_path):
    root, src, _ = built
    # a renamed copy of alpha: a different file name, the same notes -> excluded by fingerprint
    other = tmp_path / "pool-src"
    other.mkdir()
    write_piece(other / "renamed.krn", title="Renamed", tempo=120)
    write_piece(other / "fresh.krn", title="Fresh", tempo=90, variant=2)
    shutil.copy(src / "gamma.krn", other / "gamma.krn")  # same name and title -> excluded by key
    res = build(
        [str(other)],
        tmp_path / "pool",
        workers=1,
        unaligned=True,
        exclude=[root / "data"],
        cfg=CFG,
        progress=False,
    )
    assert res.excluded == ["pool-src.gamma"]
    assert res.built == ["pool-src.fresh"]
    assert "same work" in res.skipped["pool-src.renamed"]
    assert Corpus(tmp_path / "pool").ids("pool") == ["pool-src.fresh"]


def test_show_and_stats(built, tmp_path, capsys):
    root, _, _ = built
    data = root / "data"
    pid = Corpus(data).ids("test")[0]
    out = tmp_path / "show.png"
    assert run.main(["corpus", "show", pid, "--data", str(data), "--out", str(out), "--render", "1"]) == 0
    from PIL import Image

    assert Image.open(out).size[0] > 500
    assert run.main(["corpus", "show", "nope", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no piece 'nope'" in err and "Traceback" not in err
    assert run.main(["corpus", "stats", str(data), "--json", str(tmp_path / "s.json")]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "valid" in text and "test" in text
    import json

    st = json.loads((tmp_path / "s.json").read_text())
    corpus = Corpus(data)
    assert st["splits"]["all"]["pieces"] == 3
    assert st["splits"]["all"]["pairs"] == sum(e["n_pairs"] for e in corpus.pieces.values())
    assert st["splits"]["all"]["hours"] > 0


def test_training_performances_get_a_touch_and_the_held_out_plans_do_not_change():
    """Train and pool performances carry a pianist's touch and a piano program; valid and test
    pieces' plans (their ``same`` and ``shifted`` performances) are what they were without it."""
    cfg = BuildConfig(looks=2, performances=3, seed=0, touch=True)
    plain = BuildConfig(looks=2, performances=3, seed=0)
    assert all(
        p.options.program == 0 and p.options.articulation == 0
        for p in plan_piece("a.x", "train", plain).performances
    )
    touched = [p.options for pid in ("a.x", "b.y", "c.z") for p in plan_piece(pid, "train", cfg).performances]
    for o in touched:
        for k, (lo, hi) in TRAIN_TOUCH.items():
            assert lo <= getattr(o, k) <= hi
        assert o.program in TRAIN_PROGRAMS
    assert len({o.chord_spread_ms for o in touched}) > 1 and len({o.program for o in touched}) == 2
    pool = plan_piece("a.x", "pool", cfg).performances
    assert [p.options for p in pool] == [p.options for p in plan_piece("a.x", "train", cfg).performances]
    for split in ("valid", "test"):
        for p in plan_piece("a.x", split, cfg).performances:
            o = p.options
            assert (o.chord_spread_ms, o.melody_lead_ms, o.articulation, o.program) == (0, 0, 0, 0)
    # the draws of everything else are the train plan's, so the held-out plans are the old ones
    train_same = [
        replace(p.options, chord_spread_ms=0.0, melody_lead_ms=0.0, articulation=0.0, program=0)
        for p in plan_piece("a.x", "train", cfg).performances
    ]
    valid_same = [p.options for p in plan_piece("a.x", "valid", cfg).performances if p.condition == "same"]
    assert train_same == valid_same


def test_a_train_only_source_trains_and_moves_no_other_piece(built, tmp_path):
    """Generated textures added with --train-only: all in train, built like any piece; every piece
    of the other sources keeps its split (valid and test as they were)."""
    from synthesis import textures

    root, src, _ = built
    before = Corpus(root / "data")
    gen = tmp_path / "textures"
    for seed in (3, 4):
        textures.write(seed, gen, bars=6)
    res = build(
        [str(src), str(gen)], tmp_path / "d", workers=2, cfg=CFG, progress=False, train_only=[str(gen)]
    )
    after = Corpus(tmp_path / "d")
    assert not res.skipped, res.skipped
    gen_ids = sorted(p for p in after.ids() if p.startswith("textures."))
    assert gen_ids == ["textures.texture-0003", "textures.texture-0004"]
    assert all(p in after.ids("train") for p in gen_ids)
    for split in ("train", "valid", "test"):
        assert [p for p in after.ids(split) if p not in gen_ids] == before.ids(split)
    with pytest.raises(UserError, match="not one of the --source"):
        build([str(src)], tmp_path / "e", cfg=CFG, progress=False, train_only=[str(gen)])


def test_transposed_copies_train_in_other_keys_and_move_no_other_piece(built, tmp_path):
    """--transpose 2: the train piece gets two copies (distinct seeded shifts), each built like any
    piece, its notes moved by its shift, all in train; valid and test are what they were."""
    root, src, _ = built
    before = Corpus(root / "data")
    res = build([str(src)], tmp_path / "d", workers=2, cfg=CFG, progress=False, transpositions=2)
    after = Corpus(tmp_path / "d")
    assert not res.skipped, res.skipped
    (orig,) = before.ids("train")
    copies = sorted(p for p in after.ids() if p not in before.ids())
    assert len(copies) == 2 and all(p.startswith(orig + ".") for p in copies)
    assert sorted(after.ids("train")) == sorted([orig, *copies])
    for split in ("valid", "test"):
        assert after.ids(split) == before.ids(split)
    pitches = before.load(orig).note_pitch.astype(int)
    shifts = []
    for pid in copies:
        k = after.pieces[pid]["transpose"]
        assert pid.endswith(("up" if k > 0 else "down") + str(abs(k))) and k in build_mod.SHIFTS
        np.testing.assert_array_equal(after.load(pid).note_pitch.astype(int), pitches + k)
        shifts.append(k)
    assert len(set(shifts)) == 2
    item = build_mod.collect([str(src)])[0]
    assert build_mod.transposed_copies(item, 3, 0) == build_mod.transposed_copies(item, 3, 0)  # seeded
    with pytest.raises(UserError, match="between 0 and"):
        build_mod.transposed_copies(item, 12, 0)


def test_lilypond_looks_align_the_same_notes_in_another_engravers_hand(built, tmp_path):
    """--lily-looks 1: the train piece gets a LilyPond render besides its Verovio ones, its note
    heads matched to the piece's notes by musical position and pitch (the ids differ); valid and
    test pieces are as before, so the ones already built without the looks are resumed, not rebuilt."""
    root, src, _ = built
    before = Corpus(root / "data")
    cfg = replace(CFG, lily_looks=1)
    held_out = before.ids("valid") + before.ids("test")
    (tmp_path / "d" / "pieces").mkdir(parents=True)
    for pid in held_out:
        shutil.copy(piece_path(root / "data", pid), piece_path(tmp_path / "d", pid))
    res = build([str(src)], tmp_path / "d", workers=2, cfg=cfg, progress=False)
    assert not res.skipped, res.skipped
    assert sorted(res.resumed) == sorted(held_out) and res.built == before.ids("train")
    after = Corpus(tmp_path / "d")
    (train,) = after.ids("train")
    piece = after.load(train)
    assert [r.name for r in piece.renders][-1] == "same-lily0" and len(piece.renders) == CFG.looks + 1
    ver, lily = piece.renders[0], piece.renders[-1]
    ok = np.isfinite(lily.note_x)
    assert ok.mean() >= 0.9 * np.isfinite(ver.note_x).mean()  # nearly every note found in LilyPond's pages
    assert lily.strip.shape[0] == C.SHEET_WINDOW_H and not np.array_equal(
        lily.strip[:, :500], ver.strip[:, :500]
    )
    xs = lily.note_x[ok]
    assert np.all(np.diff(xs[np.argsort(piece.note_onset_s[ok], kind="stable")]) > -400)  # left to right
    for split in ("valid", "test"):
        for pid in after.ids(split):
            assert [r.name for r in after.load(pid).renders] == [r.name for r in before.load(pid).renders]
    assert "lily_looks" not in CFG.to_dict() and cfg.to_dict()["lily_looks"] == 1
    assert cfg.to_dict("train")["lily_looks"] == 1 and cfg.to_dict("valid") == CFG.to_dict("valid")
