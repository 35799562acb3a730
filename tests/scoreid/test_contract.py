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


def test_an_audio_lead_is_recorded_and_read_back():
    """A model trained to match the music ``lead`` frames after its window's centre says so in its
    contract; a contract without a lead is written as before (no new field)."""
    assert "audio_lead_frames" not in C.DEFAULT.to_dict()
    led = C.with_audio_window(84, 20)
    assert led.audio_lead_frames == 20
    assert C.Contract.from_dict(led.to_dict()) == led
    assert led.differences(C.DEFAULT) == ["audio_lead_frames: 20 != 0"]
    for bad in (-1, 42, 100):
        with pytest.raises(C.ContractError):
            C.with_audio_window(84, bad)


def test_the_followers_lag_is_half_the_window_less_the_lead():
    from scoreid.identify.follow import lag_of

    assert lag_of(84) == pytest.approx(2.1)
    assert lag_of(84, 20) == pytest.approx(1.1)


def test_a_model_with_an_audio_lead_loads_and_one_with_a_bad_lead_does_not(tmp_path):
    """load_model serves any lead the contract allows (the follower reads it); an out-of-range
    lead in a manifest is a contract error, not a crash later."""
    import json
    import shutil
    from pathlib import Path

    from scoreid.inference import load_model

    shipped = Path(__file__).resolve().parents[2] / "models" / "default"
    for lead, ok in ((20, True), (60, False)):
        mdir = tmp_path / f"lead{lead}"
        shutil.copytree(shipped, mdir)
        manifest = json.loads((mdir / "manifest.json").read_text())
        manifest["contract"]["audio_lead_frames"] = lead
        (mdir / "manifest.json").write_text(json.dumps(manifest))
        if ok:
            assert load_model(mdir, incremental=False).contract.audio_lead_frames == lead
        else:
            with pytest.raises(C.ContractError):
                load_model(mdir, incremental=False)
