"""The batch function of the encoder's :class:`~encoder_svc.batcher.DynamicBatcher`: one call
encodes the windows of many sessions and casts every vote in one Aggregator.VoteBatch, which finds
the windows' neighbours itself (``search_in_aggregator``: one RPC per batch) — or searches each
library once with Index.Search first (an index backend other than exact). It runs in the batcher's threads with blocking stubs; a stream awaits its
window's future on the event loop (``encoder_svc.server``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np

from ops.metrics import STAGE_SECONDS
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import to_tensor
from scoreid import contract as C
from scoreid.tensors import audio_to_network

SERVICE = "encoder"


class ServedEncoder(Protocol):
    """What the service needs of ``scoreid.inference.Encoders``."""

    contract: C.Contract

    def embed_audio(self, x: Any) -> np.ndarray: ...

    def embed_stream(self, x: Any, ends: Any, states: Any) -> np.ndarray: ...


class BadWindow(ValueError):
    """A window of one session that cannot be searched (non-finite features)."""


@dataclass
class WindowJob:
    """One non-silent window of one session, as submitted to the batcher."""

    excerpt: np.ndarray  # (frames, bins)
    library: str
    k: int  # neighbours to retrieve
    session_id: str
    t: float  # audio time of the window (session time)
    top_k: int  # pieces to return
    hop_s: float  # the session's hop (the engine's follower needs it)
    end: int = 0  # the stream frame after the window (the incremental encoder's position)
    state: Any = None  # the stream's incremental encoder state (None: the window is embedded whole)


class Pipeline:
    """The batch function: encode windows, then one VoteBatch for all (the aggregator searches), or
    search each library once first (``search_in_aggregator=False``).

    One aggregator call per batch instead of one per window: the aggregator runs the batch's
    votes in one Redis pipeline (BENCHMARKS.md "Streaming capacity").
    """

    def __init__(
        self,
        encoder: ServedEncoder,
        index: pbg.IndexStub,
        aggregator: pbg.AggregatorStub,
        timeout_s: float,
        search_in_aggregator: bool = True,
    ):
        self.encoder = encoder
        self.index = index
        self.aggregator = aggregator
        self.timeout_s = timeout_s
        self.search_in_aggregator = search_in_aggregator

    def __call__(self, items: Sequence[WindowJob]) -> list[tuple[Any, Any, dict[str, float]]]:
        """Per item: (HitList, None when the aggregator searched, or the index's grpc.RpcError or a
        BadWindow; VoteResult or the aggregator's grpc.RpcError; stamps)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        x = audio_to_network(np.stack([it.excerpt for it in items]))
        # the incremental encoder when the sessions have its state (a session's windows come in order)
        if any(it.state is not None for it in items):
            emb = self.encoder.embed_stream(x, [it.end for it in items], [it.state for it in items])
        else:
            emb = self.encoder.embed_audio(x)
        finite = np.isfinite(emb).all(axis=1)  # a bad window ends only its own session
        t1 = time.perf_counter()
        STAGE_SECONDS.labels(SERVICE, "encode").observe(t1 - t0)
        # CPU time of this thread in the encoder call: far below `encode` = waiting for a core or the GIL
        STAGE_SECONDS.labels(SERVICE, "encode_cpu").observe(time.thread_time() - c0)
        hits: list[Any] = [None] * len(items)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, it in enumerate(items):
            if not finite[i]:
                hits[i] = BadWindow("the audio gave non-finite features; the session is ended")
                continue
            groups.setdefault((it.library, it.k), []).append(i)
        if not self.search_in_aggregator:
            self._search(groups, emb, hits)
        t2 = time.perf_counter()
        STAGE_SECONDS.labels(SERVICE, "search").observe(t2 - t1)
        votes: list[Any] = [None] * len(items)
        todo = [i for i, hl in enumerate(hits) if not isinstance(hl, grpc.RpcError | BadWindow)]
        if todo:
            req = pb.VoteBatchRequest(
                votes=[
                    vote_request(items[i], hits[i], emb[i : i + 1], self.search_in_aggregator) for i in todo
                ]
            )
            try:
                results: Sequence[Any] = self.aggregator.VoteBatch(req, timeout=self.timeout_s).results
            except grpc.RpcError as e:
                results = [e] * len(todo)
            for i, r in zip(todo, results):
                votes[i] = r
        t3 = time.perf_counter()
        STAGE_SECONDS.labels(SERVICE, "vote_batch").observe(t3 - t2)
        stamps = {
            "encode": (t1 - t0) * 1000,
            "search": (t2 - t1) * 1000,
            "vote": (t3 - t2) * 1000,
            "batch": float(len(items)),
        }
        return [(hl, v, stamps) for hl, v in zip(hits, votes)]

    def _search(self, groups: dict[tuple[str, int], list[int]], emb: np.ndarray, hits: list[Any]) -> None:
        """Index.Search once per library and k; each window's HitList (or the call's error) in ``hits``."""
        for (lib, k), idx in groups.items():
            try:
                resp = self.index.Search(
                    pb.SearchRequest(library=lib, queries=to_tensor(emb[idx]), k=k), timeout=self.timeout_s
                )
            except grpc.RpcError as e:  # only the sessions of this library see the error
                for i in idx:
                    hits[i] = e
                continue
            for i, hl in zip(idx, resp.results):
                hits[i] = hl


def vote_request(job: WindowJob, hits: Any, emb: np.ndarray | None, search: bool = False) -> pb.VoteRequest:
    """One hop of the session's engine: the window's neighbours and embedding (none: silence), or
    with ``search`` the embedding alone, the aggregator finding its ``job.k`` neighbours."""
    req = pb.VoteRequest(
        session_id=job.session_id,
        t_seconds=job.t,
        top_k=job.top_k,
        library=job.library,
        hop_seconds=job.hop_s,
        hits=hits if hits is not None else pb.HitList(),
        search_k=job.k if search and emb is not None else 0,
    )
    if emb is not None:
        req.embedding.CopyFrom(to_tensor(np.ascontiguousarray(emb, np.float32)))
    return req


def identification(
    sid: str,
    seq: int,
    seconds: float,
    t: float,
    final: bool,
    vote: pb.VoteResponse,
    titles: dict[str, str],
    silent: bool = False,
) -> pb.Identification:
    """The client's message from the engine's answer (top-k with positions, identity, confidence,
    the session's voting windows) for the window at audio time ``t`` (``silent``: it cast no vote),
    after ``seconds`` of the session's audio."""
    msg = pb.Identification(
        session_id=sid,
        seq=seq,
        seconds=seconds,
        t_seconds=t,
        final=final,
        identity=vote.identity,
        confidence=vote.confidence,
        silent=silent,
        voting=vote.voting,
    )
    for e in vote.top:
        ps = msg.top.add(piece=e.piece, title=titles.get(e.piece, ""), score=e.score, votes=e.votes)
        if e.HasField("position"):
            ps.position.CopyFrom(e.position)
    if vote.HasField("position"):
        msg.position.CopyFrom(vote.position)
    return msg
