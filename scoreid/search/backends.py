"""Choosing a search backend by name: ``make_index("exact" | "faiss" | "faiss-ivf" | "milvus", vectors)``."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from scoreid.search.exact import ExactIndex

BACKENDS = ("exact", "faiss", "faiss-hnsw", "faiss-ivf", "milvus")


class SearchIndex(Protocol):
    name: str

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def make_index(backend: str, vectors: np.ndarray, **options: Any) -> SearchIndex:
    """A search index of the named backend over ``vectors`` (options go to its constructor)."""
    if backend == "exact":
        return ExactIndex(vectors)
    if backend in ("faiss", "faiss-hnsw", "faiss-ivf"):
        from scoreid.search.faiss_index import FaissIndex

        kind = "ivf" if backend == "faiss-ivf" else "hnsw"
        return FaissIndex(vectors, kind=kind, **options)
    if backend == "milvus":
        from scoreid.search.milvus_index import MilvusIndex

        if "uri" not in options:
            raise ValueError("the milvus backend needs a uri (a milvus-lite file path or http://host:19530)")
        return MilvusIndex(vectors, **options)
    raise ValueError(f"unknown search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
