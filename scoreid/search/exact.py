"""Exact cosine top-k by matrix product (the reference every other backend is measured against).

The answer does not depend on how queries are batched: a BLAS matrix product gives the same
similarity a few units in the last place apart depending on the batch's size and the CPU's kernels
(one query is a matrix-vector product, a batch a matrix-matrix one, and OpenBLAS' kernels split
batches differently per CPU kind), which would make a service that batches the windows of many
streams answer otherwise than ``scoreid identify`` one window at a time. So the float32 product only
shortlists the best ``k + RESCORE_MARGIN`` rows of each query; their similarities are then computed
again element by element in float64 (one fixed order of operations, whatever the batch) and rounded
to float32, and the top ``k`` are taken from those (ties by row index).
"""

from __future__ import annotations

import numpy as np

#: extra rows shortlisted per query before the exact rescoring (the float32 product is within a
#: few 1e-7 of the exact value: a row outside the shortlist would have to be that close to the k-th)
RESCORE_MARGIN = 16


def exact_similarities(q: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``q[i] . vectors[rows[i, j]]`` summed in float64 in dimension order, rounded to float32: the
    same bits for a query whatever else is in its batch."""
    v = vectors[rows].astype(np.float64)  # (Q, m, D)
    qq = q.astype(np.float64)
    acc = np.zeros(rows.shape, np.float64)
    for d in range(q.shape[1]):
        acc += v[:, :, d] * qq[:, d, None]
    return acc.astype(np.float32)


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
        m = min(n, k + RESCORE_MARGIN)
        if m < n:
            shortlist = np.argpartition(-(q @ self.vectors.T), m - 1, axis=1)[:, :m]
        else:
            shortlist = np.tile(np.arange(n), (len(q), 1))
        sims = exact_similarities(q, self.vectors, shortlist)
        # best first; ties by row index for determinism
        order = np.lexsort((shortlist, -sims), axis=1)[:, :k]
        rows = np.take_along_axis(shortlist, order, axis=1).astype(np.int64)
        return np.take_along_axis(sims, order, axis=1), rows
