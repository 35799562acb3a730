"""Sheet geometry: cutting, unrolling and windows keep positions exact."""

from __future__ import annotations

import numpy as np
import pytest

from scoreid import contract as C
from scoreid.sheet import strip as S


def test_cut_system_centres_the_band_and_pads_white():
    page = np.full((300, 400), 255, np.uint8)
    page[140:160, 50:60] = 0  # a mark at the system centre (y 150)
    band = S.cut_system(page, top=120, bottom=180, left=40, right=240)
    assert band.shape == (C.SHEET_WINDOW_H, 200)
    ys, xs = np.nonzero(band == 0)
    assert ys.min() == 140 - (150 - 80) and xs.min() == 10
    top_band = S.cut_system(page, top=0, bottom=20, left=0, right=100)  # centre 10: 70 rows of padding
    assert np.all(top_band[:70] == 255)


def test_unroll_offsets_and_windows():
    a = np.full((160, 300), 255, np.uint8)
    b = np.full((160, 500), 255, np.uint8)
    b[:, 100] = 0
    strip, offs = S.unroll([a, b])
    assert strip.shape == (160, 800) and offs == [0, 300]
    w = S.window_at(strip, 400)  # centred on x=400 -> columns 300..499, mark at 400 -> col 100
    assert w.shape == (160, 200) and np.all(w[:, 100] == 0)
    edge = S.window_at(strip, 0)
    assert np.all(edge[:, :100] == 255)
    c = S.window_centres(800, 50)
    assert c[0] == 100 and c[-1] <= 700 and np.all(np.diff(c) == 50)
    assert len(S.window_centres(120, 50)) == 1


def test_rescale_and_errors():
    page = np.full((100, 80), 255, np.uint8)
    assert S.rescale_page(page, 0.5).shape == (50, 40)
    assert S.scale_for_staff_space(16.0) == C.STAFF_SPACE_PX / 16.0
    with pytest.raises(ValueError):
        S.rescale_page(page, 0)
    with pytest.raises(ValueError):
        S.window_centres(100, 0)
