"""Index service over real gRPC: exact / FAISS / Milvus-lite backends give the exact results API,
hits carry positions, bad requests are clear statuses, health is served."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from index_svc.library import RowMeta, ServedLibrary
from index_svc.server import IndexServicer, register
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import to_tensor
from scoreid.search.exact import ExactIndex


def synthetic(n: int = 600, seed: int = 0, backend: str = "exact", **opts) -> ServedLibrary:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    piece = (np.arange(n) * 3 // n).astype(np.int32)
    meta = RowMeta(
        piece, np.arange(n) % 4, np.arange(n) % 7, np.arange(n) * 2.5, np.full(n, 10.0), np.full(n, 170.0)
    )
    return ServedLibrary(
        "lib", v, meta, ["p0", "p1", "p2"], {"p0": "Zero", "p1": "One", "p2": "Two"}, backend, opts
    )


@pytest.mark.parametrize("backend", ["exact", "faiss", "milvus"])
def test_search_matches_exact_with_positions(grpc_server, tmp_path, backend):
    opts = {"uri": str(tmp_path / "m.db")} if backend == "milvus" else {}
    lib = synthetic(backend=backend, **opts)
    s = grpc_server(register(IndexServicer({"lib": lib}, k=10)))
    stub = pbg.IndexStub(grpc.insecure_channel(s.address))
    q = lib.vectors[[5, 250, 599]] + 0.05
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    resp = stub.Search(pb.SearchRequest(queries=to_tensor(q)))
    es, er = ExactIndex(lib.vectors).search(q, 10)
    assert len(resp.results) == 3
    for hl, erow, srow in zip(resp.results, er, es):
        assert len(hl.hits) == 10
        rows = [h.row for h in hl.hits]
        assert len(set(rows) & set(erow.tolist())) >= 9
        h = hl.hits[0]
        assert h.row == erow[0] and h.score == pytest.approx(srow[0], abs=1e-5)
        assert h.piece == lib.piece_ids[lib.meta.piece[h.row]] and h.x == pytest.approx(h.row * 2.5)
        assert h.page == h.row % 4 and h.system == h.row % 7 and h.y1 == 170.0
        assert h.chance_weight == pytest.approx(1.0)  # three pieces of 200 windows each
    info = stub.Info(pb.InfoRequest())
    assert info.default_library == "lib" and info.libraries[0].vectors == 600
    assert dict(info.libraries[0].titles) == {"p0": "Zero", "p1": "One", "p2": "Two"}
    assert info.libraries[0].backend == backend


def test_bad_requests(grpc_server):
    s = grpc_server(register(IndexServicer({"lib": synthetic()})))
    ch = grpc.insecure_channel(s.address)
    stub = pbg.IndexStub(ch)
    good = to_tensor(np.ones((1, 32), np.float32) / np.sqrt(32))
    cases = [
        (pb.SearchRequest(library="other", queries=good), grpc.StatusCode.NOT_FOUND, "unknown library"),
        (
            pb.SearchRequest(queries=to_tensor(np.ones((2, 8), np.float32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "shape",
        ),
        (
            pb.SearchRequest(queries=pb.Tensor(shape=[2, 32], data=b"123")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "bytes",
        ),
        (
            pb.SearchRequest(queries=to_tensor(np.full((1, 32), np.nan, np.float32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "NaN",
        ),
        (pb.SearchRequest(queries=good, k=100000), grpc.StatusCode.INVALID_ARGUMENT, "k must be"),
        (pb.SearchRequest(queries=pb.Tensor(shape=[-1, 32])), grpc.StatusCode.INVALID_ARGUMENT, "negative"),
        (  # a 32 KB request once asked for 17.6 MB of hits (4 096 queries x k 1 000)
            pb.SearchRequest(queries=to_tensor(np.ones((4096, 32), np.float32) / np.sqrt(32)), k=1000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "queries x k",
        ),
    ]
    for req, code, text in cases:
        with pytest.raises(grpc.RpcError) as e:
            stub.Search(req)
        assert e.value.code() == code and text in e.value.details(), (text, e.value.details())
    h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="scoreid.v1.Index"))
    assert h.status == health_pb2.HealthCheckResponse.SERVING


def test_add_piece_extends_every_backend(tmp_path):
    for backend, opts in (("exact", {}), ("faiss", {}), ("milvus", {"uri": str(tmp_path / "m.db")})):
        lib = synthetic(300, backend=backend, **opts)
        rng = np.random.default_rng(9)
        v = rng.standard_normal((20, 32)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        assert lib.hit(0, 1.0)["chance_weight"] == pytest.approx(1.0)  # before: 3 pieces of 100
        n = 20
        lib.add_piece(
            "new",
            "New piece",
            v,
            RowMeta(
                np.zeros(n, np.int32), np.ones(n), np.zeros(n), np.arange(n) * 1.0, np.zeros(n), np.ones(n)
            ),
        )
        s, r = lib.search(v[3], 1)
        hit = lib.hit(int(r[0, 0]), float(s[0, 0]))
        assert r[0, 0] == 303 and hit["piece"] == "new"
        # chance weights follow the change: mean (3 x 100 + 20) / 4 = 80 windows per piece
        assert hit["chance_weight"] == pytest.approx(4.0**0.75)
        assert lib.hit(0, 1.0)["chance_weight"] == pytest.approx(0.8**0.75)

        with pytest.raises(ValueError, match="already"):
            lib.add_piece("new", "x", v, lib.meta)
