"""Decaying vote tallies: half-life semantics, ordering, errors."""

from __future__ import annotations

import math

import pytest

from scoreid.identify.tally import VoteTally, decay_factor


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
