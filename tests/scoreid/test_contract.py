"""The feature contract serialises, round-trips, and reports every mismatch."""

from __future__ import annotations

import dataclasses

import pytest

from scoreid import contract as C


def test_round_trip():
    d = C.DEFAULT.to_dict()
    assert C.Contract.from_dict(d) == C.DEFAULT
    assert d["n_bins"] == 92 and d["sheet_window"] == [160, 200] and d["embed_dim"] == 32


def test_mismatch_names_the_fields():
    other = dataclasses.replace(C.DEFAULT, fps=25, embed_dim=64)
    with pytest.raises(C.ContractError, match="fps.*embed_dim|embed_dim.*fps"):
        C.DEFAULT.check_compatible(other)


def test_unknown_fields_and_bad_windows_are_rejected():
    with pytest.raises(C.ContractError, match="unknown"):
        C.Contract.from_dict({**C.DEFAULT.to_dict(), "bogus": 1})
    with pytest.raises(C.ContractError, match="one of"):
        C.with_audio_window(50)
    assert C.with_audio_window(168).audio_window_frames == 168
