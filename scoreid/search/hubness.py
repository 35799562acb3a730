"""Hub correction: sheet windows that are near *every* audio window stop winning every search.

In a shared audio-sheet space some sheet windows are hubs: close to the middle of where audio
embeddings fall, they are among the nearest neighbours of audio from any piece, and their pieces
collect votes from music they have nothing to do with (on the real-performance validation set one
long sonata movement was the top piece of 16 % of the wrongly identified excerpts). The remedy is
the cross-domain similarity local scaling of Conneau et al. (2018, "Word translation without
parallel data"), reduced to its sheet half: a window's score against an audio query is its cosine
similarity minus ``weight`` times its *hubness* ``r(s)``, the mean similarity of the window to its
``k`` nearest audio embeddings in a fixed **bank** of audio windows (training-corpus performances,
embedded by the same model: ``trainer/run.py hub-bank`` writes it beside the model). A hub has a
high ``r(s)`` and is pushed down; a window only near its own music keeps its score.

Every search backend stays an inner-product search: rows are stored as ``[v, -weight * r]`` and
queries sent as ``[q, 1]`` (:func:`search_rows`, :func:`search_queries`), so exact, FAISS and Milvus
indexes rank by the corrected score without knowing about it, and the score they return is the
corrected one. A library without hub scores (or with weight 0) searches exactly as before.
"""

from __future__ import annotations

import hashlib

import numpy as np

HUB_K = 10  #: audio neighbours a window's hubness averages over
HUB_WEIGHT = 0.5  #: default weight of the hubness in the corrected score
HUB_CHUNK = 2048  #: windows per block when scoring against the bank


def bank_sha(bank: np.ndarray) -> str:
    """The bank's identity as libraries record it (the sha256 of its float32 bytes and shape)."""
    b = np.ascontiguousarray(bank, np.float32)
    h = hashlib.sha256(repr(b.shape).encode())
    h.update(b.tobytes())
    return h.hexdigest()


def hub_scores(vectors: np.ndarray, bank: np.ndarray, k: int = HUB_K) -> np.ndarray:
    """(N,) float32: each row's mean cosine similarity to its ``k`` nearest bank rows.

    Computed in float64 and rounded to float32, so the same rows and bank give the same bits on any
    CPU (a float32 BLAS product differs in the last place between kernels)."""
    v = np.asarray(vectors, np.float64)
    b = np.asarray(bank, np.float64)
    if v.ndim != 2 or b.ndim != 2 or (len(v) and v.shape[1] != b.shape[1]):
        raise ValueError(f"rows {v.shape} and bank {b.shape} must be 2-d with the same width")
    if len(b) == 0:
        raise ValueError("the hub bank is empty")
    k = max(1, min(int(k), len(b)))
    out = np.zeros(len(v), np.float32)
    for i in range(0, len(v), HUB_CHUNK):
        sims = v[i : i + HUB_CHUNK] @ b.T
        top = np.partition(sims, len(b) - k, axis=1)[:, len(b) - k :]
        out[i : i + HUB_CHUNK] = np.sort(top, axis=1).mean(axis=1)  # sorted: one summation order
    return out


def search_rows(vectors: np.ndarray, hub: np.ndarray | None, weight: float) -> np.ndarray:
    """The rows a search index holds: ``[v, -weight * hub]`` (N, D + 1), or the vectors themselves
    when there is no correction (no hub scores or weight 0)."""
    v = np.asarray(vectors, np.float32)
    if hub is None or weight == 0:
        return v
    h = np.asarray(hub, np.float32).reshape(-1, 1)
    if len(h) != len(v):
        raise ValueError(f"{len(h)} hub scores for {len(v)} rows")
    return np.ascontiguousarray(np.hstack([v, (-float(weight) * h).astype(np.float32)]))


def search_queries(queries: np.ndarray, corrected: bool) -> np.ndarray:
    """Queries for an index of :func:`search_rows`: ``[q, 1]`` when the rows are corrected."""
    q = np.asarray(queries, np.float32)
    if q.ndim == 1:
        q = q[None]
    if not corrected:
        return q
    return np.ascontiguousarray(np.hstack([q, np.ones((len(q), 1), np.float32)]))
