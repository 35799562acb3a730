"""FAISS approximate search (HNSW or IVF, inner product) with the results API of ``ExactIndex``.

``FaissIndex(vectors, kind="hnsw" | "ivf")``: HNSW (``M`` links, ``ef_search``) needs no training
and suits libraries up to tens of millions of rows; IVF-Flat (``nlist`` lists, ``nprobe`` probed)
trains k-means on the vectors. Results are ``(scores (Q, k) float32, rows (Q, k) int64)``, best
first, ties broken by row like the exact backend; k is capped at the index size.
"""

from __future__ import annotations

import math

import faiss
import numpy as np


def _sort_results(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop FAISS's -1 fill and order each row best first, ties by row id."""
    order = np.lexsort((rows, -scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


class FaissIndex:
    """Approximate inner-product search over L2-normalised vectors."""

    def __init__(
        self,
        vectors: np.ndarray,
        kind: str = "hnsw",
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 16,
        threads: int = 1,
        seed: int = 0,
    ):
        v = np.ascontiguousarray(np.asarray(vectors, np.float32))
        if v.ndim != 2:
            raise ValueError(f"vectors must be 2-d, got shape {v.shape}")
        self.dim = v.shape[1]
        self.kind = kind
        self.name = f"faiss-{kind}"
        faiss.omp_set_num_threads(max(1, threads))
        if kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = ef_construction
            hnsw.hnsw.efSearch = ef_search
            self.index: faiss.Index = hnsw
        elif kind == "ivf":
            n = len(v)
            nlist = nlist or max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
            quantizer = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.cp.seed = seed
            if n:
                ivf.train(v)
            ivf.nprobe = min(nprobe, nlist)
            self._quantizer = quantizer  # keep alive
            self.index = ivf
        else:
            raise ValueError(f"unknown FAISS index kind {kind!r} (hnsw or ivf)")
        if len(v):
            self.index.add(v)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (their row ids continue after the existing ones)."""
        v = np.ascontiguousarray(np.asarray(vectors, np.float32))
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"vectors must be (n, {self.dim}), got shape {v.shape}")
        self.index.add(v)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.shape[1] != self.dim:
            raise ValueError(f"query dim {q.shape[1]} != index dim {self.dim}")
        k = min(k, len(self))
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, rows = self.index.search(np.ascontiguousarray(q), k)
        rows = rows.astype(np.int64)
        missing = rows < 0  # fewer than k found (IVF with small nprobe): fill with the worst score
        if missing.any():
            scores = np.where(missing, -np.inf, scores)
        s, r = _sort_results(scores.astype(np.float32), rows)
        return s, r
