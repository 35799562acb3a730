"""The real-dev set's logic on tiny inputs: matching by notes, work grouping, seeded excerpts, isolation."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from trainer.realdev.build import canonical_folders, scanned
from trainer.realdev.excerpts import excerpt_start, plan_excerpts
from trainer.realdev.isolated import IsolatedError, run_isolated
from trainer.realdev.matches import CorpusFile, ScoreNotes, containment, ngrams, rank_candidates, similarity
from trainer.realdev.works import Work, work_id

RNG = np.random.default_rng(7)
#: a toy "movement": 600 random-walk pitches (a melody-like line)
MOVEMENT = tuple(int(p) for p in 60 + np.cumsum(RNG.integers(-3, 4, 600)) % 24)
OTHER = tuple(int(p) for p in 60 + np.cumsum(np.random.default_rng(8).integers(-3, 4, 600)) % 24)


def with_ornaments(seq: tuple[int, ...], every: int = 40) -> tuple[int, ...]:
    """Another edition: a two-note turn inserted every ``every`` notes."""
    out: list[int] = []
    for i, p in enumerate(seq):
        out.append(p)
        if i % every == every - 1:
            out += [p + 1, p]
    return tuple(out)


def test_ngrams_and_containment():
    assert ngrams([1, 2, 3, 4], 3) == {(1, 2, 3), (2, 3, 4)}
    assert ngrams([1, 2], 3) == set()
    assert containment([1, 2, 3, 4], [0, 1, 2, 3, 4, 5], 3) == 1.0
    assert containment([1, 2, 3, 9], [1, 2, 3, 4], 3) == 0.5
    assert containment([1, 2], [1, 2, 3], 3) == 0.0  # no n-gram in the head


def test_the_same_work_in_another_edition_matches_and_another_work_does_not():
    assert similarity(MOVEMENT, MOVEMENT) == 1.0
    assert similarity(MOVEMENT, with_ornaments(MOVEMENT)) > 0.8
    assert similarity(MOVEMENT, OTHER) < 0.1
    assert similarity(MOVEMENT, OTHER) == similarity(OTHER, MOVEMENT)


def test_a_section_matches_the_whole_movement_either_way():
    section = MOVEMENT[250:420]
    assert similarity(MOVEMENT, section) == 1.0
    assert similarity(section, MOVEMENT) == 1.0


def test_candidates_are_ranked_best_first_with_ties_by_piece_id():
    files = [
        CorpusFile(pid, f"{pid}.krn", ScoreNotes(seq, "verovio"))
        for pid, seq in (("b.other", OTHER), ("a.same", with_ornaments(MOVEMENT)), ("c.same", MOVEMENT))
    ]
    ranked = rank_candidates(MOVEMENT, files)
    assert [f.pid for _, f in ranked] == ["c.same", "a.same", "b.other"]
    assert ranked[0][0] == 1.0 > ranked[1][0] > 0.8 > 0.1 > ranked[2][0]


def test_folders_of_one_work_share_the_folder_without_no_repeat():
    works = [Work(f, Path(f), ()) for f in ("H/S/32-1", "H/S/32-1_no_repeat", "H/S/50-1_no_repeat")]
    matches = {
        "works": {
            "H/S/32-1_no_repeat": {"same_work_as": [{"folder": "H/S/32-1", "score": 1.0}]},
            "H/S/32-1": {"same_work_as": [{"folder": "H/S/32-1_no_repeat", "score": 1.0}]},
        }
    }
    canon = canonical_folders(works, matches)
    assert canon == {
        "H/S/32-1": "H/S/32-1",
        "H/S/32-1_no_repeat": "H/S/32-1",
        "H/S/50-1_no_repeat": "H/S/50-1_no_repeat",
    }
    assert work_id("Haydn/Keyboard_Sonatas/32-1_no_repeat") == "haydn.keyboard-sonatas.32-1-no-repeat"


def test_excerpt_starts_are_seeded_bounded_and_independent_of_the_others():
    a = excerpt_start(0, "w", "p1", 30.0, 200.0)
    assert a == excerpt_start(0, "w", "p1", 30.0, 200.0)
    assert a is not None and 0.0 <= a <= 170.0
    assert excerpt_start(1, "w", "p1", 30.0, 200.0) != a
    assert excerpt_start(0, "w", "p1", 10.0, 200.0) != a
    assert excerpt_start(0, "w", "p1", 30.0, 20.0) is None  # too short for 30 s
    assert excerpt_start(0, "w", "p1", 20.0, 20.0) == 0.0
    perfs = [("w", "p1", 200.0), ("w", "p2", 15.0), ("v", "p1", 100.0)]
    plan = plan_excerpts(perfs, [10, 20, 30], seed=0)
    assert [(e.folder, e.performer, e.length_s) for e in plan] == [
        ("w", "p1", 10.0),
        ("w", "p1", 20.0),
        ("w", "p1", 30.0),
        ("w", "p2", 10.0),
        ("v", "p1", 10.0),
        ("v", "p1", 20.0),
        ("v", "p1", 30.0),
    ]
    alone = plan_excerpts(perfs[2:], [30], seed=0)
    assert alone[0] == plan[-1]
    with pytest.raises(ValueError):
        excerpt_start(0, "w", "p1", 0.0, 10.0)


def test_scanned_pages_are_deterministic_upscaled_and_grey():
    page = np.full((40, 30), 255, np.uint8)
    page[10:12, :] = 0
    a = scanned(page, np.random.default_rng(0))
    assert a.shape == (80, 60) and a.dtype == np.uint8
    assert np.array_equal(a, scanned(page, np.random.default_rng(0)))
    assert 0 < a.min() and a[2:6, 2:6].mean() < 250  # ink not black, paper not white


def _fail() -> int:
    raise ValueError("bad score")


def _crash() -> int:
    os.kill(os.getpid(), signal.SIGSEGV)
    return 0


def test_isolated_calls_return_or_raise_without_taking_the_caller_down():
    assert run_isolated(sum, [1, 2, 3], timeout=30) == 6
    with pytest.raises(IsolatedError, match="ValueError: bad score"):
        run_isolated(_fail, timeout=30)
    with pytest.raises(IsolatedError, match="crashed"):
        run_isolated(_crash, timeout=30)


def test_a_corpus_built_before_the_exclusion_never_trains_on_a_real_dev_work(tmp_path):
    """A corpus whose train split still holds real-dev works (built before the build left them out)
    is filtered where training reads it; the other splits are unchanged."""
    import json

    from trainer.corpus.build import realdev_corpus_pids
    from trainer.corpus.store import Corpus

    held = sorted(realdev_corpus_pids())
    assert held
    splits = {"train": [held[0], "other-piece"], "valid": [], "test": [held[-1]], "pool": []}
    pieces = {p: {"split": s} for s, ps in splits.items() for p in ps}
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "pieces": pieces, "splits": splits}))
    c = Corpus(tmp_path)
    assert c.ids("train") == ["other-piece"] and c.ids("test") == [held[-1]]


def test_a_distractor_is_engraved_as_a_grand_staff_and_a_real_dev_work_is_left_out(tmp_path):
    """A four-part chorale is reduced to a grand staff and engraved in the real-dev look; the same
    score is left out when its notes are those of a real-dev work (never a distractor of itself)."""
    from trainer.corpus.sources import music21_items
    from trainer.realdev.distractors import build_piece, grand_staff_file

    (item,) = music21_items("bach/bwv66.6*")
    reduced = grand_staff_file(item.path, tmp_path)
    assert reduced != item.path and reduced.suffix == ".musicxml"
    unrelated = {"Bach/Other": [60, 62, 64, 65, 67, 69, 71, 72] * 20}
    built = run_isolated(build_piece, item, tmp_path / "d", 0, unrelated, 0.5, timeout=300)
    pages = sorted((tmp_path / "d").glob("p*.png"))
    assert built.pages == len(pages) >= 1 and built.best_match[1] < 0.5
    meta = json.loads((tmp_path / "d" / "piece.json").read_text())
    assert meta["distractor"] is True and meta["source"].endswith(item.path.name)
    from trainer.realdev.matches import music21_pitches

    itself = {"Bach/Chorale": list(music21_pitches(item.path))}  # the four parts, as a real-dev score
    left = run_isolated(build_piece, item, tmp_path / "e", 0, itself, 0.5, timeout=300)
    assert left.pages == 0 and left.best_match[0] == "Bach/Chorale" and left.best_match[1] >= 0.5
    assert not (tmp_path / "e").exists()


def test_pages_in_a_second_engravers_hand_are_scanned_like_the_sets(tmp_path):
    """``--engraver lilypond``: the work's MusicXML engraved by LilyPond, degraded like every page of
    the set, written with its piece.json; the same work in Verovio's hand gives other pages."""
    from PIL import Image
    from scorefixtures import write_piece

    from synthesis.engrave import _to_musicxml
    from trainer.realdev.build import build_sheets

    krn = write_piece(tmp_path / "w.krn")
    score = tmp_path / "Composer" / "Work"
    score.mkdir(parents=True)
    (score / "xml_score.musicxml").write_text(_to_musicxml(krn))  # as ASAP gives a work: MusicXML
    work = Work("Composer/Work", score, ())
    n = {e: build_sheets(work, tmp_path / e, 0, e) for e in ("lilypond", "verovio")}
    assert n["lilypond"] >= 1 and json.loads((tmp_path / "lilypond" / "piece.json").read_text())
    a = np.asarray(Image.open(tmp_path / "lilypond" / "p1.png"))
    b = np.asarray(Image.open(tmp_path / "verovio" / "p1.png"))
    assert a.dtype == np.uint8 and np.median(a) < 252 and np.percentile(a, 0.5) < 128  # grey paper, ink
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_a_second_set_shares_the_performances_of_the_first_and_never_replaces_its_own(tmp_path):
    from trainer.realdev.build import link_audio

    (tmp_path / "set" / "audio" / "w").mkdir(parents=True)
    link_audio(tmp_path / "lily", tmp_path / "set")
    assert (tmp_path / "lily" / "audio").resolve() == (tmp_path / "set" / "audio").resolve()
    link_audio(tmp_path / "lily", tmp_path / "set")  # again: the link is renewed
    (tmp_path / "own" / "audio").mkdir(parents=True)
    with pytest.raises(SystemExit, match="already holds"):
        link_audio(tmp_path / "own", tmp_path / "set")
    with pytest.raises(SystemExit, match="not a built set"):
        link_audio(tmp_path / "x", tmp_path / "nothing")
