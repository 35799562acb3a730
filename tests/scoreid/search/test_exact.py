"""Exact search returns the true top-k, best first, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from scoreid.search.exact import ExactIndex


def test_exact_top_k_matches_full_sort():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((500, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = v[:7] + 0.01 * rng.standard_normal((7, 32)).astype(np.float32)
    scores, rows = ExactIndex(v).search(q, 25)
    full = np.argsort(-(q @ v.T), axis=1)[:, :25]
    assert np.array_equal(rows, full)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.array_equal(rows[:, 0], np.arange(7))


def test_k_larger_than_index_and_bad_dims():
    idx = ExactIndex(np.eye(3, 4, dtype=np.float32))
    s, r = idx.search(np.ones(4, np.float32), 10)
    assert r.shape == (1, 3)
    with pytest.raises(ValueError):
        idx.search(np.ones((1, 5), np.float32), 2)
