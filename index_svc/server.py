"""The Index gRPC servicer: Search (batched queries, top-k hits with positions), Info, Ingest (admin).

Libraries are loaded at start (name -> :class:`ServedLibrary`); an empty library name means the
default one. Errors: unknown library -> NOT_FOUND, wrong query shape / k -> INVALID_ARGUMENT.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import numpy as np

from index_svc.library import ServedLibrary
from ops.grpc_server import add_standard_services, public_details
from ops.logs import log_event
from ops.metrics import ERRORS, INDEX_VECTORS, RPC_SECONDS, STAGE_SECONDS
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import from_tensor
from scoreid.identify.engine import TOP_K

SERVICE = "index"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Index"].full_name
MAX_K = 1000
MAX_QUERIES = 4096
#: queries x k per Search: a bounded answer (16 384 hits ~ 1 MB) whatever the request asks
MAX_RESULTS = 16384
log = logging.getLogger("scoreid.index")


class IndexServicer(pbg.IndexServicer):
    def __init__(self, libraries: dict[str, ServedLibrary], default: str = "", k: int = TOP_K):
        if not libraries:
            raise ValueError("the index service needs at least one library")
        self.libraries = dict(libraries)
        self.default = default or next(iter(self.libraries))
        if self.default not in self.libraries:
            raise ValueError(f"default library {self.default!r} is not loaded")
        self.k = k
        for name, lib in self.libraries.items():
            INDEX_VECTORS.labels(SERVICE, name).set(len(lib))

    def _fail(self, context: grpc.ServicerContext, code: grpc.StatusCode, msg: str) -> Any:
        ERRORS.labels(SERVICE, code.name).inc()
        if code != grpc.StatusCode.INVALID_ARGUMENT:  # the log keeps what the caller does not see
            log_event(log, "request failed", level=logging.WARNING, code=code.name, error=msg)
        context.abort(code, public_details(msg))

    def library(self, name: str, context: grpc.ServicerContext) -> ServedLibrary:
        lib = self.libraries.get(name or self.default)
        if lib is None:
            self._fail(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"unknown library {name!r}; loaded: {', '.join(sorted(self.libraries))}",
            )
        assert lib is not None
        return lib

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        t0 = time.perf_counter()
        lib = self.library(request.library, context)
        try:
            q = from_tensor(request.queries)
        except ValueError as e:
            return self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, f"queries: {e}")
        dim = lib.vectors.shape[1]
        if q.ndim != 2 or q.shape[1] != dim or not (0 < len(q) <= MAX_QUERIES):
            return self._fail(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"queries must have shape (1..{MAX_QUERIES}, {dim}), got {q.shape}",
            )
        if not np.all(np.isfinite(q)):
            return self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, "queries contain NaN or Inf")
        k = int(request.k or self.k)
        if k > MAX_K:
            return self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, f"k must be <= {MAX_K}, got {k}")
        if len(q) * k > MAX_RESULTS:
            return self._fail(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"queries x k must be <= {MAX_RESULTS}, got {len(q)} x {k}",
            )
        scores, rows = lib.search(q, k)
        t1 = time.perf_counter()
        STAGE_SECONDS.labels(SERVICE, "search").observe(t1 - t0)
        resp = pb.SearchResponse()
        for srow, rrow in zip(scores, rows):
            hl = resp.results.add()
            for s, r in zip(srow, rrow):
                if r >= 0:
                    hl.hits.append(pb.Hit(**lib.hit(int(r), float(s))))
        RPC_SECONDS.labels(SERVICE, "Search").observe(time.perf_counter() - t0)
        return resp

    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoResponse:
        names = [request.library] if request.library else sorted(self.libraries)
        resp = pb.InfoResponse(default_library=self.default)
        for n in names:
            lib = self.library(n, context)
            resp.libraries.append(
                pb.LibraryInfo(
                    name=n,
                    vectors=len(lib),
                    backend=lib.backend,
                    titles=lib.titles,
                    model_sha256=lib.model_sha256,
                )
            )
        return resp

    def Ingest(self, request: pb.IngestRequest, context: grpc.ServicerContext) -> pb.IngestResponse:
        from index_svc.ingest import IngestError, ingest

        lib = self.library(request.library, context)
        t0 = time.perf_counter()
        try:
            n = ingest(lib, request.piece, request.title, request.composer, request.pdf, list(request.pages))
        except IngestError as e:
            return self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        INDEX_VECTORS.labels(SERVICE, lib.name).set(len(lib))
        RPC_SECONDS.labels(SERVICE, "Ingest").observe(time.perf_counter() - t0)
        log_event(log, "ingested", library=lib.name, piece=request.piece, vectors=n)
        return pb.IngestResponse(piece=request.piece, vectors_added=n)


def register(servicer: IndexServicer) -> Any:
    """``register(server)`` callback of a ``grpc.aio`` server: the Index servicer (blocking
    handlers, run in the server's thread pool) plus health and reflection."""

    async def add(server: grpc.aio.Server) -> None:
        pbg.add_IndexServicer_to_server(servicer, server)
        await add_standard_services(server, [SERVICE_NAME])

    return add
