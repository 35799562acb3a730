"""Milvus search (milvus-lite file locally, a Milvus cluster by URI) with the ``ExactIndex`` results API.

``MilvusIndex(vectors, uri="lib.db")`` creates (or replaces) one collection holding the rows with
their row number as primary key, index ``FLAT`` (exact, the default for milvus-lite) or
``IVF_FLAT`` / ``HNSW`` on a cluster, metric inner product. ``uri`` is a local path for
milvus-lite or ``http://host:19530`` for a server; the deploy/ manifests run a cluster.
"""

from __future__ import annotations

import re

import numpy as np
from pymilvus import DataType, MilvusClient

BATCH = 10_000


class MilvusIndex:
    """Inner-product search in a Milvus collection over L2-normalised vectors."""

    name = "milvus"

    def __init__(
        self,
        vectors: np.ndarray,
        uri: str,
        collection: str = "scoreid_library",
        index_type: str = "FLAT",
        index_params: dict | None = None,
        search_params: dict | None = None,
        token: str = "",
    ):
        v = np.asarray(vectors, np.float32)
        if v.ndim != 2:
            raise ValueError(f"vectors must be 2-d, got shape {v.shape}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", collection):
            raise ValueError(f"invalid Milvus collection name {collection!r}")
        self.dim = v.shape[1]
        self.collection = collection
        self.search_params = {"metric_type": "IP", "params": dict(search_params or {})}
        self.client = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        if self.client.has_collection(collection):
            self.client.drop_collection(collection)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=self.dim)
        ip = self.client.prepare_index_params()
        ip.add_index(field_name="v", index_type=index_type, metric_type="IP", params=dict(index_params or {}))
        self.client.create_collection(collection, schema=schema, index_params=ip)
        self._n = 0
        self.add(v)
        self.client.load_collection(collection)

    def __len__(self) -> int:
        return self._n

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (their row ids continue after the existing ones)."""
        v = np.asarray(vectors, np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"vectors must be (n, {self.dim}), got shape {v.shape}")
        for s in range(0, len(v), BATCH):
            chunk = v[s : s + BATCH]
            rows = [{"row": self._n + s + i, "v": chunk[i].tolist()} for i in range(len(chunk))]
            self.client.insert(self.collection, rows)
        self._n += len(v)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.shape[1] != self.dim:
            raise ValueError(f"query dim {q.shape[1]} != index dim {self.dim}")
        k = min(k, self._n)
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        res = self.client.search(
            self.collection,
            data=q.tolist(),
            limit=k,
            anns_field="v",
            search_params=self.search_params,
            output_fields=["row"],
        )
        scores = np.full((len(q), k), -np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        for i, hits in enumerate(res):
            got = sorted(
                ((float(h["distance"]), int(h["row"])) for h in hits), key=lambda sr: (-sr[0], sr[1])
            )
            for j, (s, r) in enumerate(got[:k]):
                scores[i, j], rows[i, j] = s, r
        return scores, rows

    def close(self) -> None:
        self.client.close()
