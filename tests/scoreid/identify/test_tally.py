"""Decaying vote tallies: half-life semantics, ordering, errors."""

from __future__ import annotations

import math

import pytest

from scoreid.identify.tally import VoteTally, chance_weights, decay_factor, window_votes


def test_half_life_halves_old_votes():
    t = VoteTally(half_life=10.0)
    t.update({"a": 4.0}, 0.0)
    t.update({"b": 3.0}, 10.0)
    assert t.tallies["a"] == pytest.approx(2.0)
    assert t.top(2) == [("b", 3.0), ("a", pytest.approx(2.0))]


def test_no_decay_is_plain_counting_and_ties_are_deterministic():
    t = VoteTally(half_life=math.inf)
    for i in range(5):
        t.update({"x": 1, "y": 1}, float(i))
    assert t.top() == [("x", 5.0), ("y", 5.0)]


def test_answer_changes_when_the_music_changes():
    t = VoteTally(half_life=5.0)
    for s in range(30):
        t.update({"first": 10}, s * 0.5)
    for s in range(30, 50):
        t.update({"second": 10}, s * 0.5)
    assert t.top(1)[0][0] == "second"


def test_errors():
    with pytest.raises(ValueError):
        VoteTally(half_life=0)
    t = VoteTally()
    t.update({}, 5.0)
    with pytest.raises(ValueError, match="backwards"):
        t.update({}, 4.0)
    assert decay_factor(0, 1.0) == 1.0


def test_chance_weights_shrink_the_chance_advantage_of_long_pieces():
    w = chance_weights({"long": 300, "short": 100, "empty": 0})  # mean 200 windows
    assert w == {"long": pytest.approx((200 / 300) ** 0.75), "short": pytest.approx(2.0**0.75)}
    # a random neighbour lands in a piece in proportion to its windows: 3x unweighted, 3**0.25 weighted
    assert (300 * w["long"]) / (100 * w["short"]) == pytest.approx(3**0.25)
    # clipped at 3x either way: a 10-window fragment among 1 000-window pieces gets 3, not 67**0.75
    w = chance_weights({"big": 1000, "big2": 1000, "tiny": 10})
    assert w["tiny"] == pytest.approx(3.0) and w["big"] == pytest.approx(0.67**0.75)


def test_window_votes_hand_computed():
    hits = [("a", 0.90, 1.0), ("b", 0.88, 2.0), ("a", 0.86, 1.0)]
    v = window_votes(hits, temperature=0.02)
    assert v["a"] == pytest.approx(1.0 + math.exp(-2.0))
    assert v["b"] == pytest.approx(2.0 * math.exp(-1.0))
    # the published scheme: every neighbour votes 1
    assert window_votes([(p, s, 1.0) for p, s, _ in hits], temperature=math.inf) == {"a": 2.0, "b": 1.0}
    # unknown chance weights (0, NaN) count as 1; no hits, no votes
    assert window_votes([("a", 0.5, 0.0), ("a", 0.5, math.nan)], math.inf) == {"a": 2.0}
    assert window_votes([]) == {}
    with pytest.raises(ValueError, match="temperature"):
        window_votes(hits, temperature=0.0)


def test_a_tally_restored_from_its_state_goes_on_exactly():
    a = VoteTally(half_life=5.0)
    a.update({"x": 1.0, "y": 0.25}, 1.0)
    a.update({"y": 2.0 / 3.0, "z": 1e-7}, 2.5)
    b = VoteTally.from_state(a.state(), half_life=5.0)
    assert b.tallies == a.tallies and b.t_last == a.t_last and b.half_life == a.half_life
    for v, t in (({"x": 0.5}, 3.0), ({"z": 3.0}, 9.0)):
        a.update(v, t)
        b.update(v, t)
        assert b.top(3) == a.top(3)
    assert VoteTally.from_state(VoteTally().state()).t_last is None
    bad = {**a.state(), "pieces": ["x"]}
    with pytest.raises(ValueError, match="tally state"):
        VoteTally.from_state(bad)
