"""bench/realdev.py at several library sizes: a sub-library is the same library cut down (the same
answers as a library built of those pieces alone), an excerpt's library holds its work and draws the
rest reproducibly, an open-set library never holds the work, and the summaries count identity right
and wrong as defined."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine_sweep import ProjectingEncoder, frames_of

from bench import realdev as R
from bench.libwriter import unit_rows, write_core_library
from bench.tempo_lever import TempoVotes, resample_frames, stretch_frames
from scoreid.identify.stream import Identifier
from scoreid.library.store import Library


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {f"p{i:02d}": unit_rows(rng, int(n)) for i, n in enumerate(rng.integers(30, 90, size=14))}


@pytest.fixture(scope="module")
def lib(tmp_path_factory, rows) -> Library:
    return Library.open(write_core_library(tmp_path_factory.mktemp("realdev") / "lib", rows))


def test_a_subset_is_the_library_of_those_pieces_alone(tmp_path, lib, rows):
    keep = ["p03", "p07", "p11"]
    sub = lib.subset(keep)
    alone = Library.open(write_core_library(tmp_path / "alone", {p: rows[p] for p in keep}))
    assert sub.piece_ids == alone.piece_ids == keep
    np.testing.assert_array_equal(sub.vectors, alone.vectors)
    for k in alone.meta:
        np.testing.assert_array_equal(sub.meta[k], alone.meta[k])
    assert sub.rows == alone.rows
    assert sub.at_strip_x("p07", 120.0) == alone.at_strip_x("p07", 120.0)
    enc = ProjectingEncoder(1)
    frames = frames_of(5, 12.0)
    a = [u.ranking for u in Identifier(sub, enc).push_frames(frames)]
    b = [u.ranking for u in Identifier(alone, enc).push_frames(frames)]
    assert a == b
    with pytest.raises(KeyError):
        lib.subset(["p03", "nope"])


def test_an_excerpt_library_holds_its_work_and_draws_the_rest_reproducibly(lib):
    a = R.excerpt_library(lib, "p05", 6, "w/perf/30", 0, True)
    assert len(a.piece_ids) == 6 and "p05" in a.rows
    assert a.piece_ids == R.excerpt_library(lib, "p05", 6, "w/perf/30", 0, True).piece_ids
    others = {tuple(R.excerpt_library(lib, "p05", 6, f"w/perf{i}/30", 0, True).piece_ids) for i in range(8)}
    assert len(others) > 1  # another excerpt draws another library
    out = R.excerpt_library(lib, "p05", 6, "w/perf/30", 0, False)
    assert len(out.piece_ids) == 6 and "p05" not in out.rows
    assert R.excerpt_library(lib, "p05", 99, "k", 0, True) is lib  # "all": the whole library


def test_stream_reports_identity_right_wrong_and_the_top1_of_every_hop(lib):
    audio = np.random.default_rng(0).normal(0, 0.1, 22050 * 6).astype(np.float32)
    st = R.stream(lib, ProjectingEncoder(2), audio, "p01", 0.5)
    assert len(st.right) in (12, 13)  # a hop per 0.5 s, and the last partial one
    assert st.rank is None or st.rank >= 1
    assert (st.identity not in (None, "p01")) <= (st.first_wrong_identity_s is not None)
    assert (st.identity == "p01") <= (st.first_identity_s is not None)


def test_a_stretched_stream_is_the_spectrogram_longer_in_time(lib):
    x = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = stretch_frames(x, 1.5)
    assert y.shape == (30, 3) and y[0, 0] == 0 and y[-1, 0] == 19
    assert np.all(np.diff(y[:, 0]) > 0) and np.allclose(np.diff(y[:, 0]), 19 / 29, atol=1e-5)
    np.testing.assert_array_equal(stretch_frames(x, 1.0), x)
    assert stretch_frames(x, 0.5).shape == (10, 3)
    with pytest.raises(ValueError):
        stretch_frames(x, 0.0)
    audio = np.random.default_rng(0).normal(0, 0.1, 22050 * 6).astype(np.float32)
    st = R.stream(lib, ProjectingEncoder(2), audio, "p01", 0.5, stretch=1.5)
    assert len(st.right) in (18, 19)  # 9 s of frames: a hop per 0.5 s of them
    # stretch 1 through the frames path is the audio path: the same hops, the same answers
    plain = R.stream(lib, ProjectingEncoder(2), audio, "p01", 0.5)
    same = R.stream(lib, ProjectingEncoder(2), audio, "p01", 0.5, stretch=1.0 + 1e-12)
    assert plain.right == same.right and plain.rank == same.rank


def test_tempo_votes_embed_each_window_at_every_factor_and_all_vote(lib):
    x = np.random.default_rng(1).random((40, 3)).astype(np.float32)
    np.testing.assert_array_equal(resample_frames(x, 40), x)
    assert resample_frames(x[-32:], 40).shape == (40, 3)
    frames = frames_of(5, 12.0)
    plain = Identifier(lib, ProjectingEncoder(1))
    voted = TempoVotes(lib, ProjectingEncoder(1), [1.0])
    a = [u.ranking for u in plain.push_frames(frames)]
    assert a == [u.ranking for u in voted.push_frames(frames)]  # factor 1 alone: the plain stream
    three = TempoVotes(lib, ProjectingEncoder(1), [0.8, 1.0, 1.25])
    ups = three.push_frames(frames)
    assert len(ups) == len(a) and three.windows.frames >= plain.windows.frames / 0.8
    assert sum(v for _p, _s, v in ups[-1].ranking) > sum(v for _p, _s, v in a[-1])  # three windows' votes
    for bad in ([0.8, 1.25], [0.0, 1.0]):
        with pytest.raises(ValueError):
            TempoVotes(lib, ProjectingEncoder(1), bad)


def mk(
    work: str, identity: str | None, rank: int | None, right: str, inside: bool = True, **kw
) -> R.ExcerptResult:
    base = dict(
        folder="A/x",
        performer="p",
        composer="A",
        length_s=30.0,
        start_s=0.0,
        size=10,
        top1=None,
        tti_s=None,
        first_identity_s=None,
        first_wrong_identity_s=None,
    )
    base.update(kw)
    return R.ExcerptResult(work=work, identity=identity, rank=rank, right=right, in_library=inside, **base)


def test_summaries_count_identity_right_wrong_and_the_curve():
    rs = [
        mk("a", "a", 1, "0111", first_identity_s=1.5, tti_s=1.0),
        mk("b", "c", 2, "0000", first_wrong_identity_s=2.0),
        mk("c", None, 1, "0011", tti_s=1.5),
        mk("d", None, 3, "1100", first_wrong_identity_s=0.5),
    ]
    s = R.summary(rs)
    assert s["top1"] == 0.5 and s["identity_right"] == 0.25 and s["identity_wrong"] == 0.25
    assert s["identity_ever_wrong"] == 0.5 and s["median_time_to_identity_s"] == 1.5
    assert R.curve(rs, 0.5) == [[0.5, 0.25], [1.0, 0.5], [1.5, 0.5], [2.0, 0.5]]
    o = R.open_summary(
        [mk("a", "x", 1, "0", False, first_wrong_identity_s=3.0), mk("b", None, 1, "0", False)]
    )
    assert o == {"streams": 2, "named_at_end": 0.5, "ever_named": 0.5}


def test_performances_are_chosen_per_composer_round_robin_over_works():
    perfs = [
        {"folder": f"{c}/{w}", "work": f"{c}.{w}", "performer": f"x{i}"}
        for c in ("Bach", "Liszt")
        for w in ("a", "b")
        for i in range(3)
    ]
    got = R.select_performances(perfs, None, per_composer=3)
    assert sorted((p["folder"], p["performer"]) for p in got) == [
        ("Bach/a", "x0"),
        ("Bach/a", "x1"),
        ("Bach/b", "x0"),
        ("Liszt/a", "x0"),
        ("Liszt/a", "x1"),
        ("Liszt/b", "x0"),
    ]
    assert R.parse_sizes("40,200,all", 150) == [40, 150]
    with pytest.raises(SystemExit):
        R.parse_sizes("1", 150)


def test_the_hub_weight_is_chosen_without_scoring_again(lib):
    hub = np.linspace(0.0, 1.0, len(lib)).astype(np.float32)
    scored = Library(
        lib.dir,
        {**lib.index, "hub": {"bank": "b" * 64, "k": 10, "weight": 0.5}},
        lib.vectors,
        lib.meta,
        lib.piece_ids,
        hub,
    )
    assert scored.search_vectors.shape[1] == lib.vectors.shape[1] + 1
    off = R.with_hub_weight(scored, 0.0)
    assert off.hub_weight == 0.0 and off.search_vectors.shape == lib.vectors.shape
    heavier = R.with_hub_weight(scored, 2.0)
    assert heavier.hub_weight == 2.0 and np.allclose(heavier.search_vectors[:, -1], -2.0 * hub)
    assert scored.hub_weight == 0.5  # the library it came from is unchanged
    with pytest.raises(SystemExit):
        R.with_hub_weight(lib, 1.0)  # no hub scores to weigh


def test_set_reaches_the_follower_of_the_realdev_bench(monkeypatch):
    """``bench.realdev --set NAME=VALUE`` parses like bench.follow's (a follower change is checked
    on the identity benchmark too)."""
    from bench import realdev
    from bench.follow import follower_overrides
    from scoreid.identify import follow

    monkeypatch.setattr(follow, "TEMPERATURE", follow.TEMPERATURE)
    args = realdev.parse_args(["--set", "TEMPERATURE=0.2"])
    assert follower_overrides(args.set) == {"TEMPERATURE": 0.2} and follow.TEMPERATURE == 0.2


def test_works_of_another_set_keep_the_works_paged_in_both_and_their_performances(tmp_path):
    """--works-of: two real-dev sets engraved differently are compared on the same works and the
    same performances, in the same order (a work one engraver failed on is left out of both)."""
    import json

    def make(root, paged):
        for w in paged:
            (root / "pieces" / w).mkdir(parents=True)
            (root / "pieces" / w / "piece.json").write_text("{}")
        perfs = [{"work": w, "performer": f"P{k}"} for w in ("a", "b", "c") for k in range(2)]
        doc = {"pieces": {w: {} for w in ("a", "b", "c")}, "performances": perfs}
        (root / "set.json").write_text(json.dumps(doc))
        return doc

    one, other = tmp_path / "one", tmp_path / "other"
    doc = make(one, ["a", "b", "c"])
    make(other, ["a", "c"])
    got = R.restrict_works(doc, one, [other])
    assert sorted(got["pieces"]) == ["a", "c"]
    assert [(p["work"], p["performer"]) for p in got["performances"]] == [
        ("a", "P0"),
        ("a", "P1"),
        ("c", "P0"),
        ("c", "P1"),
    ]
    assert R.restrict_works(doc, one, []) is doc
