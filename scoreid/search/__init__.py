"""Nearest-neighbour search over L2-normalised embeddings, one results API for every backend.

``search(queries (Q, D), k) -> (scores (Q, k) float32, rows (Q, k) int64)``, best first, cosine
similarity. Backends: ``exact`` (numpy matmul, the default for small libraries); larger-scale
backends (FAISS, Milvus) live beside it and must return the same API.
"""
