"""The tensor contract: network inputs keep positions exact (sheet ink, audio excerpts and layout)."""

from __future__ import annotations

import numpy as np

from scoreid import tensors as S


def test_network_tensors():
    w = np.full((3, 160, 200), 255, np.uint8)
    w[1] = 0
    t = S.sheet_to_network(w)
    assert t.shape == (3, 1, 80, 100) and t.dtype == np.float32
    assert t[0].max() == 0 and t[1].min() == 1
    spec = np.arange(200 * 92, dtype=np.float32).reshape(200, 92)
    aw = S.audio_window(spec, 100)
    assert aw.shape == (84, 92) and aw[42, 0] == spec[100, 0]
    assert np.all(S.audio_window(spec, 0)[:42] == 0)
    a = S.audio_to_network(np.stack([aw, aw]))
    assert a.shape == (2, 1, 92, 84) and a[0, 0, 5, 42] == spec[100, 5]
