"""The session engine: a state saved and restored at any hop continues exactly as if never saved,
and a state that cannot be restored is an error, never a wrong answer."""

from __future__ import annotations

import numpy as np
import pytest

from bench.libwriter import unit_rows, write_core_library
from scoreid.identify.engine import MAGIC, EngineSettings, EngineStateError, SessionEngine
from scoreid.library.store import Library
from scoreid.search.exact import ExactIndex


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Library:
    rng = np.random.default_rng(0)
    vecs = {f"piece-{i}": unit_rows(rng, n) for i, n in enumerate((90, 140, 60, 200))}
    return Library.open(write_core_library(tmp_path_factory.mktemp("lib") / "lib", vecs))


def hops(library: Library, pid: str, n: int, seed: int = 1):
    """A stream playing ``pid`` from its start, one library window per hop (plus noise), some
    silent hops: (t, embedding or None, hits)."""
    rng = np.random.default_rng(seed)
    index = ExactIndex(library.vectors)
    s, e = library.rows[pid]
    for k in range(n):
        t = 0.5 * (k + 1)
        if k % 13 == 5:
            yield t, None, []
            continue
        v = library.vectors[s + min(k, e - s - 1)] + rng.normal(scale=0.1, size=32).astype(np.float32)
        v = (v / np.linalg.norm(v)).astype(np.float32)
        sims, rows = index.search(v[None], 25)
        yield t, v, [(str(library.meta["piece"][r]), float(x)) for r, x in zip(rows[0], sims[0])]


def step(eng: SessionEngine, t, emb, hits):
    return eng.silent(t) if emb is None else eng.vote(t, emb, hits)


@pytest.mark.parametrize("follower", ["guard", "tempo", "hmm", "best"])
def test_a_restored_state_continues_exactly(library, follower):
    settings = EngineSettings(hop_s=0.5, half_life=8.0, follower=follower)
    whole = SessionEngine(library, settings)
    saved = SessionEngine(library, settings)
    for k, (t, emb, hits) in enumerate(hops(library, "piece-1", 60)):
        want = step(whole, t, emb, hits)
        blob = saved.to_bytes()
        saved = SessionEngine.from_bytes(library, blob)  # every hop through bytes, as the aggregator does
        got = step(saved, t, emb, hits)
        assert got == want, f"hop {k}"
        assert saved.to_bytes() == whole.to_bytes()
    assert want.ranking[0][0] == "piece-1" and want.positions["piece-1"].x > 0
    assert SessionEngine.from_bytes(library, saved.to_bytes()).settings == settings


def test_time_cannot_go_backwards(library):
    eng = SessionEngine(library)
    t, emb, hits = next(h for h in hops(library, "piece-0", 3) if h[1] is not None)
    eng.vote(t, emb, hits)
    with pytest.raises(ValueError, match="backwards"):
        eng.vote(t - 0.5, emb, hits)
    with pytest.raises(ValueError, match="backwards"):
        eng.silent(t - 0.5)


@pytest.mark.parametrize("bad", [np.zeros(31, np.float32), np.full(32, np.nan, np.float32)])
def test_bad_embeddings_and_unknown_pieces_are_refused(library, bad):
    eng = SessionEngine(library)
    with pytest.raises(ValueError, match="embedding"):
        eng.vote(1.0, bad, [("piece-0", 0.9)])
    with pytest.raises(ValueError, match="not in the library"):
        eng.vote(1.0, library.vectors[0], [("no-such-piece", 0.9)])
    assert eng.t_last is None and eng.n_voting == 0  # nothing changed


def test_corrupt_states_are_errors(library):
    eng = SessionEngine(library)
    for t, emb, hits in hops(library, "piece-2", 20):
        step(eng, t, emb, hits)
    blob = eng.to_bytes()
    for bad in (
        b"",
        b"garbage",
        blob[:-7],
        blob + b"x",
        MAGIC + b"\xff\xff\xff\x7f{}",
        blob.replace(b'"pieces"', b'"piecex"'),
    ):
        with pytest.raises(EngineStateError):
            SessionEngine.from_bytes(library, bad)


def test_a_track_whose_piece_changed_is_rebuilt_not_misread(library, tmp_path):
    eng = SessionEngine(library)
    for t, emb, hits in hops(library, "piece-0", 20):
        step(eng, t, emb, hits)
    rng = np.random.default_rng(5)  # the same ids, piece-0 re-added with another number of windows
    other = Library.open(
        write_core_library(
            tmp_path / "lib2",
            {"piece-0": unit_rows(rng, 50), "piece-1": library.vectors[slice(*library.rows["piece-1"])]},
        )
    )
    restored = SessionEngine.from_bytes(other, eng.to_bytes())
    assert "piece-0" not in restored.follower.tracks


def test_the_follower_lag_is_half_the_models_window(tmp_path):
    from scoreid import contract as C

    rng = np.random.default_rng(0)
    for frames in (84, 168):
        lib_dir = write_core_library(
            tmp_path / f"lib{frames}", {"p": unit_rows(rng, 40)}, C.with_audio_window(frames)
        )
        eng = SessionEngine(Library.open(lib_dir))
        assert eng.follower.lag_s == pytest.approx(frames / 2 / C.FPS)
        t, emb, hits = 0.5, eng.library.vectors[3], [("p", 0.9)]
        eng.vote(t, emb, hits)
        assert all(tr.lag_s == eng.follower.lag_s for tr in eng.follower.tracks.values())


def test_sequence_evidence_orders_the_followed_candidates_when_weighted(library):
    """A stream that plays piece-1 in order while piece-0 collects slightly more votes: with the
    sequence weight, the followed candidates are ordered by log(tally) + w * evidence, and piece-1's
    in-order path wins; without it the tally's order stands. The evidence survives the state blob."""
    index = ExactIndex(library.vectors)
    s1, _ = library.rows["piece-1"]
    s0, e0 = library.rows["piece-0"]
    rng = np.random.default_rng(4)
    engines = {w: SessionEngine(library, EngineSettings(sequence_weight=w)) for w in (0.0, 0.5)}
    for k in range(30):
        v = library.vectors[s1 + k]
        sims, rows = index.search(v[None], 25)
        hits = [(str(library.meta["piece"][r]), float(x)) for r, x in zip(rows[0], sims[0])]
        # piece-0 gets a vote a little stronger than piece-1's, at a random place each hop (no order)
        hits = [("piece-0", float(sims[0][0]) + 0.01)] * 2 + hits
        emb = (v + 0.3 * library.vectors[s0 + rng.integers(0, e0 - s0)]).astype(np.float32)
        emb /= np.linalg.norm(emb)
        ups = {w: eng.vote(0.5 * (k + 1), emb, hits) for w, eng in engines.items()}
    f = engines[0.5].follower
    assert f.evidence("piece-1") > f.evidence("piece-0")
    assert ups[0.0].ranking[0][0] == "piece-0" and ups[0.5].ranking[0][0] == "piece-1"
    again = SessionEngine.from_bytes(library, engines[0.5].to_bytes())
    assert again.follower.evidence("piece-1") == f.evidence("piece-1")
    assert again.snapshot(15.0).ranking == engines[0.5].snapshot(15.0).ranking


def test_states_of_the_earlier_formats_are_refused(library):
    """Format 3 (each part's own state, framed) reads no earlier format: a blob written by an
    aggregator before it is an error (the session is lost, never misread)."""
    eng = SessionEngine(library)
    for t, emb, hits in list(hops(library, "piece-3", 20)):
        step(eng, t, emb, hits)
    body = eng.to_bytes()[len(MAGIC) :]
    for old in (b"scoreid-engine/1\n", b"scoreid-engine/2\n"):
        with pytest.raises(EngineStateError, match="unknown format"):
            SessionEngine.from_bytes(library, old + body)


def test_pieces_not_voted_for_in_a_long_time_leave_the_tally(library):
    eng = SessionEngine(library, EngineSettings(half_life=1.0))
    stream = [h for h in hops(library, "piece-0", 12) if h[1] is not None]
    for t, emb, hits in stream[:5]:
        eng.vote(t, emb, hits)
    voted = set(eng.tally.tallies)
    assert len(voted) > 1
    t, emb, _hits = stream[5]
    eng.vote(t + 60.0, emb, [("piece-2", 0.9)])  # a minute (60 half-lives) later: one vote
    assert set(eng.tally.tallies) == {"piece-2"}


def test_the_number_of_followed_candidates_is_a_setting(library):
    for bad in (0, 51, 2.5):
        with pytest.raises(ValueError, match="candidates"):
            EngineSettings(candidates=bad)
    for n in (1, 3):
        eng = SessionEngine(library, EngineSettings(candidates=n))
        for t, emb, hits in hops(library, "piece-1", 20):
            step(eng, t, emb, hits)
        assert 1 <= len(eng.follower.tracks) <= n
        assert SessionEngine.from_bytes(library, eng.to_bytes()).settings.candidates == n


def test_the_library_evidence_is_a_setting_and_survives_the_state(library):
    """``EngineSettings.evidence``: the null of the sequence evidence that orders the candidates;
    a session with either continues exactly through its blob, and a blob without the library null
    (no ``null`` of the recent windows, no ``evidence_library`` of a track: a state of before it,
    which formats 3 and later do not read) is an error, not a session silently run on the piece null."""
    import json
    import struct

    with pytest.raises(ValueError, match="evidence"):
        EngineSettings(evidence="anywhere")
    settings = EngineSettings(evidence="library", sequence_weight=0.5)
    whole, saved = SessionEngine(library, settings), SessionEngine(library, settings)
    steps = list(hops(library, "piece-3", 40))
    for t, emb, hits in steps:
        want = step(whole, t, emb, hits)
        saved = SessionEngine.from_bytes(library, saved.to_bytes())
        assert step(saved, t, emb, hits) == want
    f = whole.follower
    assert want.ranking[0][0] == "piece-3"
    assert f.evidence("piece-3", "library") != f.evidence("piece-3")  # two nulls, two numbers
    blob = whole.to_bytes()
    (n,) = struct.unpack_from("<I", blob, len(MAGIC))
    header = json.loads(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + n])
    for drop in ("null", "evidence_library"):
        h = json.loads(json.dumps(header))
        if drop == "null":
            h["follower"]["history"].pop("null")
        for tr in h["follower"]["tracks"].values():
            tr.pop(drop, None)
        head = json.dumps(h, separators=(",", ":")).encode()
        with pytest.raises(EngineStateError):
            SessionEngine.from_bytes(
                library, MAGIC + struct.pack("<I", len(head)) + head + blob[len(MAGIC) + 4 + n :]
            )
