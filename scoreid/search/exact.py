"""Exact cosine top-k by matrix product (the reference every other backend is measured against)."""

from __future__ import annotations

import numpy as np


class ExactIndex:
    """Brute-force inner-product search over L2-normalised vectors."""

    name = "exact"

    def __init__(self, vectors: np.ndarray):
        v = np.asarray(vectors, np.float32)
        if v.ndim != 2:
            raise ValueError(f"vectors must be 2-d, got shape {v.shape}")
        self.vectors = np.ascontiguousarray(v)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"query dim {q.shape[1]} != index dim {self.vectors.shape[1]}")
        n = len(self.vectors)
        k = min(k, n)
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        sims = q @ self.vectors.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(q), 1))
        psims = np.take_along_axis(sims, part, axis=1)
        # best first; ties by row index for determinism
        order = np.lexsort((part, -psims), axis=1)
        rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
        return np.take_along_axis(sims, rows, axis=1).astype(np.float32), rows
