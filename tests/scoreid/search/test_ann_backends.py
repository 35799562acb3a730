"""FAISS (HNSW, IVF) and Milvus (milvus-lite) backends: same results API as exact, recall vs exact."""

from __future__ import annotations

import numpy as np
import pytest

from scoreid.search.backends import make_index
from scoreid.search.exact import ExactIndex


def clustered(n: int, q: int, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Library-like vectors: neighbouring windows of a piece lie close together."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 50, dim))
    v = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    qs = v[rng.integers(0, n, q)] + 0.2 * rng.standard_normal((q, dim))
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    return v.astype(np.float32), qs.astype(np.float32)


def recall(rows: np.ndarray, exact_rows: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(rows, exact_rows)]))


def check_api(scores: np.ndarray, rows: np.ndarray, q: int, k: int, index) -> None:
    assert scores.shape == (q, k) and scores.dtype == np.float32
    assert rows.shape == (q, k) and rows.dtype == np.int64
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "best first"
    assert rows.min() >= 0 and rows.max() < len(index)
    assert all(len(set(r)) == k for r in rows)


@pytest.mark.parametrize("backend,min_recall", [("faiss-hnsw", 0.95), ("faiss-ivf", 0.9)])
def test_faiss_recall_against_exact(backend, min_recall):
    v, q = clustered(4000, 60)
    es, er = ExactIndex(v).search(q, 25)
    index = make_index(backend, v)
    s, r = index.search(q, 25)
    check_api(s, r, 60, 25, index)
    assert recall(r, er) >= min_recall
    # the scores are true inner products of the returned rows
    np.testing.assert_allclose(s, np.einsum("qd,qkd->qk", q, v[r]), atol=1e-5)
    # exact self-match: a stored vector finds itself first
    s1, r1 = index.search(v[123], 1)
    assert r1[0, 0] == 123 and s1[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_faiss_add_and_small_k_and_errors():
    v, q = clustered(500, 5, seed=1)
    index = make_index("faiss", v[:300])
    index.add(v[300:])
    assert len(index) == 500
    s, r = index.search(v[450:452], 1)
    assert r[:, 0].tolist() == [450, 451]
    small = make_index("faiss", v[:3])
    s, r = small.search(q, 25)
    assert r.shape == (5, 3)
    with pytest.raises(ValueError, match="dim"):
        index.search(np.zeros((1, 8), np.float32), 3)
    with pytest.raises(ValueError, match="unknown"):
        make_index("annoy", v)


def test_milvus_lite_matches_exact(tmp_path):
    v, q = clustered(2000, 20, seed=2)
    index = make_index("milvus", v[:1500], uri=str(tmp_path / "lib.db"))
    try:
        index.add(v[1500:])
        assert len(index) == 2000
        es, er = ExactIndex(v).search(q, 25)
        s, r = index.search(q, 25)
        check_api(s, r, 20, 25, index)
        assert recall(r, er) >= 0.99
        np.testing.assert_allclose(s, es, atol=1e-5)
        with pytest.raises(ValueError, match="dim"):
            index.search(np.zeros((1, 8), np.float32), 3)
    finally:
        index.close()
    with pytest.raises(ValueError, match="uri"):
        make_index("milvus", v)
