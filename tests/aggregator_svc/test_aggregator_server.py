"""Aggregator over real gRPC + real Redis: each vote is one hop of the core session engine, replicas
share sessions, a killed aggregator's sessions continue exactly, errors are statuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from svc_helpers import free_port, terminate

from aggregator_svc.libraries import Libraries
from aggregator_svc.server import AggregatorServicer, register, update_to_pb
from aggregator_svc.store import EngineStates
from bench.libwriter import unit_rows, write_core_library
from ops.grpc_server import wait_healthy
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import to_tensor
from scoreid.identify.engine import EngineSettings, SessionEngine
from scoreid.library.store import Library
from scoreid.search.exact import ExactIndex

ROOT = Path(__file__).resolve().parents[2]
PIECES = {"a": 80, "b": 120, "c": 60}


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    return write_core_library(
        tmp_path_factory.mktemp("agg") / "lib", {p: unit_rows(rng, n) for p, n in PIECES.items()}
    )


def windows(lib: Library, pid: str, n: int, seed: int = 1, t0: float = 0.5):
    """(t, embedding, HitList) of a stream playing ``pid``; every 7th window is silent (no hits)."""
    rng = np.random.default_rng(seed)
    index = ExactIndex(lib.vectors)
    s, e = lib.rows[pid]
    for k in range(n):
        t = t0 + 0.5 * k
        v = lib.vectors[s + min(k, e - s - 1)] + rng.normal(scale=0.1, size=32).astype(np.float32)
        v = (v / np.linalg.norm(v)).astype(np.float32)
        if k % 7 == 3:
            yield t, v, pb.HitList()
            continue
        sims, rows = index.search(v[None], 25)
        hl = pb.HitList(
            hits=[pb.Hit(piece=str(lib.meta["piece"][r]), score=float(x)) for r, x in zip(rows[0], sims[0])]
        )
        yield t, v, hl


def vote(sid: str, t: float, emb: np.ndarray, hl: pb.HitList, **kw) -> pb.VoteRequest:
    req = pb.VoteRequest(session_id=sid, t_seconds=t, hits=hl, **kw)
    if hl.hits:
        req.embedding.CopyFrom(to_tensor(emb[None]))
    return req


def reference(
    lib: Library, settings: EngineSettings, t: float, emb: np.ndarray, hl: pb.HitList, eng: SessionEngine
):
    if not hl.hits:
        return eng.silent(t)
    return eng.vote(t, emb, [(h.piece, float(h.score)) for h in hl.hits])


def servicer(redis_server, lib_dir: Path, top_k: int = 5, **settings) -> AggregatorServicer:
    """The servicer with the engine settings ``settings`` (EngineSettings' fields by name)."""
    return AggregatorServicer(
        EngineStates(redis_server.client()),
        Libraries({"lib": str(lib_dir)}),
        EngineSettings(**settings),
        top_k,
    )


def test_two_replicas_give_the_offline_engines_answer_at_every_hop(redis_server, grpc_server, lib_dir):
    servers = [
        grpc_server(register(servicer(redis_server, lib_dir, half_life=4.0, top_k=3))) for _ in range(2)
    ]
    stubs = [pbg.AggregatorStub(grpc.insecure_channel(s.address)) for s in servers]
    lib = Library.open(lib_dir)
    settings = EngineSettings(hop_s=0.5, half_life=4.0)
    eng = SessionEngine(lib, settings)
    for i, (t, emb, hl) in enumerate(windows(lib, "b", 40)):
        want = update_to_pb(reference(lib, settings, t, emb, hl, eng), eng.t_last, 3, eng.n_voting)
        got = stubs[i % 2].Vote(vote("shared", t, emb, hl))
        assert got == want, f"hop {i}"
    assert got.top[0].piece == "b" and got.top[0].HasField("position") and got.identity in ("", "b")
    assert got.position == got.top[0].position and got.top[0].position.file in ("p1.png", "p2.png")
    again = stubs[0].Get(pb.GetRequest(session_id="shared", top_k=3))
    assert [t.piece for t in again.top] == [t.piece for t in got.top] and again.t_seconds == got.t_seconds
    assert stubs[1].Close(pb.CloseRequest(session_id="shared")).existed
    assert not stubs[0].Close(pb.CloseRequest(session_id="shared")).existed
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(servers[0].address))
    assert h.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING


def test_bad_requests_are_statuses_and_change_nothing(redis_server, grpc_server, lib_dir):
    stub = pbg.AggregatorStub(
        grpc.insecure_channel(grpc_server(register(servicer(redis_server, lib_dir))).address)
    )
    lib = Library.open(lib_dir)
    t, emb, hl = next(w for w in windows(lib, "a", 3) if w[2].hits)
    cases = [
        (vote("", t, emb, hl), grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
        (pb.VoteRequest(session_id="s", t_seconds=t, hits=hl), grpc.StatusCode.INVALID_ARGUMENT, "embedding"),
        (
            vote("s", t, emb, pb.HitList(hits=[pb.Hit(piece="zzz", score=0.5)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not in the library",
        ),
        (vote("s", t, emb, hl, library="nope"), grpc.StatusCode.NOT_FOUND, "unknown library"),
        (vote("s", t, emb, hl, top_k=51), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
        (vote("s", t, emb, hl, hop_seconds=-1), grpc.StatusCode.INVALID_ARGUMENT, "hop"),
        (vote("x" * 1_000_000, t, emb, hl), grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
        (vote("a/b", t, emb, hl), grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
        (vote("s", 1e9, emb, hl), grpc.StatusCode.INVALID_ARGUMENT, "t_seconds"),
        (vote("s", float("nan"), emb, hl), grpc.StatusCode.INVALID_ARGUMENT, "t_seconds"),
        (
            vote("s", t, emb, pb.HitList(hits=[pb.Hit(piece="a", score=float("nan"))])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "finite",
        ),
        (
            vote("s", t, emb, pb.HitList(hits=[pb.Hit(piece="a", score=1e30)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "finite",
        ),
        (
            vote("s", t, emb, pb.HitList(hits=[pb.Hit(piece="a", score=0.5)] * 1001)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "at most",
        ),
        (vote("s", t, np.full(32, np.nan, np.float32), hl), grpc.StatusCode.INVALID_ARGUMENT, "embedding"),
    ]
    for req, code, words in cases:
        with pytest.raises(grpc.RpcError) as e:
            stub.Vote(req)
        assert e.value.code() == code and words in e.value.details(), (words, e.value.details())
    assert not redis_server.client().exists("scoreid:session:{s}:engine")
    stub.Vote(vote("s", 3.0, emb, hl))
    with pytest.raises(grpc.RpcError) as e:
        stub.Vote(vote("s", 1.0, emb, hl))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "backwards" in e.value.details()
    redis_server.client().hset("scoreid:session:{s}:engine", "state", b"scoreid-engine/1\ngarbage")
    with pytest.raises(grpc.RpcError) as e:
        stub.Vote(vote("s", 4.0, emb, hl))
    assert e.value.code() == grpc.StatusCode.DATA_LOSS


def test_redis_down_is_unavailable(grpc_server, lib_dir):
    import redis as redis_lib

    client = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    s = grpc_server(register(AggregatorServicer(EngineStates(client), Libraries({"lib": str(lib_dir)}))))
    stub = pbg.AggregatorStub(grpc.insecure_channel(s.address))
    lib = Library.open(lib_dir)
    t, emb, hl = next(w for w in windows(lib, "a", 3) if w[2].hits)
    for call in (
        lambda: stub.Vote(vote("s", t, emb, hl)),
        lambda: stub.VoteBatch(pb.VoteBatchRequest(votes=[vote("s", t, emb, hl)])),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "redis" in e.value.details()


def start_aggregator_process(redis_url: str, port: int, lib_dir: Path) -> subprocess.Popen:
    env = dict(
        os.environ,
        SCOREID__REDIS__URL=redis_url,
        SCOREID__AGGREGATOR__PORT=str(port),
        SCOREID__AGGREGATOR__METRICS_PORT="0",
        SCOREID__AGGREGATOR__HALF_LIFE_S="10.0",
        SCOREID__INDEX__LIBRARIES=json.dumps({"lib": str(lib_dir)}),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator_svc"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=20)
    except TimeoutError:
        proc.kill()
        raise AssertionError(
            proc.stderr.read().decode() if proc.stderr else "aggregator did not start"
        ) from None
    return proc


def test_kill_9_mid_stream_is_unavailable_and_a_restart_continues_exactly(redis_server, lib_dir):
    port = free_port()
    proc = start_aggregator_process(redis_server.url, port, lib_dir)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pbg.AggregatorStub(channel)
    lib = Library.open(lib_dir)
    settings = EngineSettings(hop_s=0.5, half_life=10.0)
    eng = SessionEngine(lib, settings)
    stream = list(windows(lib, "c", 24))
    try:
        for t, emb, hl in stream[:12]:
            stub.Vote(vote("live", t, emb, hl))
            reference(lib, settings, t, emb, hl, eng)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with pytest.raises(grpc.RpcError) as e:
            stub.Vote(vote("live", *stream[12]), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        proc = start_aggregator_process(redis_server.url, port, lib_dir)
        for t, emb, hl in stream[12:]:
            got = stub.Vote(vote("live", t, emb, hl), wait_for_ready=True, timeout=10)
            assert got == update_to_pb(reference(lib, settings, t, emb, hl, eng), eng.t_last, 5, eng.n_voting)
    finally:
        channel.close()
        terminate(proc)


def test_vote_batch_equals_single_votes_and_isolates_bad_votes(redis_server, grpc_server, lib_dir):
    stub = pbg.AggregatorStub(
        grpc.insecure_channel(grpc_server(register(servicer(redis_server, lib_dir))).address)
    )
    lib = Library.open(lib_dir)
    streams = [list(windows(lib, p, 10, seed=i)) for i, p in enumerate(("a", "b", "c"))]
    for step in range(10):  # sessions "one-*" by VoteBatch, "single-*" by Vote
        batch = [vote(f"one-{i}", *streams[i][step], top_k=3) for i in range(3)]
        got = stub.VoteBatch(pb.VoteBatchRequest(votes=batch)).results
        assert len(got) == 3
        for i, r in enumerate(got):
            assert r.code == 0, r.error
            assert r.response == stub.Vote(vote(f"single-{i}", *streams[i][step], top_k=3))
    t, emb, hl = streams[0][0]
    bad = [
        vote("one-0", 0.0, emb, hl),  # time went backwards
        vote("", 9.0, emb, hl),
        vote("one-1", 9.0, emb, hl),  # fine
        vote("one-1", 9.5, emb, hl),  # a second vote for one session
        vote("one-2", 9.0, emb, hl, library="nope"),
    ]
    res = stub.VoteBatch(pb.VoteBatchRequest(votes=bad)).results
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [r.code for r in res] == [invalid, invalid, 0, invalid, grpc.StatusCode.NOT_FOUND.value[0]]
    assert "backwards" in res[0].error and "session_id" in res[1].error and "one vote" in res[3].error
    assert res[2].response.t_seconds == 9.0
    assert stub.VoteBatch(pb.VoteBatchRequest()).results == []
    with pytest.raises(grpc.RpcError) as e:  # a bounded request: at most 1024 sessions per call
        stub.VoteBatch(pb.VoteBatchRequest(votes=[vote(f"many-{i}", t, emb, hl) for i in range(1025)]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most" in e.value.details()


def test_a_vote_the_aggregator_searches_equals_one_with_the_indexs_hits(redis_server, grpc_server, lib_dir):
    """``search_k``: the vote carries only the embedding and the aggregator finds its neighbours (one
    search for the batch) — the same answer at every hop as a vote with the hits of an exact search
    on the library's search vectors; a vote that cannot be searched fails alone."""
    stub = pbg.AggregatorStub(
        grpc.insecure_channel(grpc_server(register(servicer(redis_server, lib_dir))).address)
    )
    lib = Library.open(lib_dir)
    index = ExactIndex(lib.search_vectors)
    streams = [list(windows(lib, p, 12, seed=5 + i)) for i, p in enumerate(("b", "c"))]
    for step in range(12):
        batch, singles = [], []
        for i, stream in enumerate(streams):
            t, emb, hl = stream[step]
            if hl.hits:  # sounding: searched by the aggregator / by the index's exact search
                sims, rows = index.search(lib.search_queries(emb[None]), 25)
                hl = pb.HitList(
                    hits=[
                        pb.Hit(piece=str(lib.meta["piece"][r]), score=float(x))
                        for r, x in zip(rows[0], sims[0])
                    ]
                )
                req = pb.VoteRequest(session_id=f"searched-{i}", t_seconds=t, top_k=3, search_k=25)
                req.embedding.CopyFrom(to_tensor(emb[None]))
            else:
                req = pb.VoteRequest(session_id=f"searched-{i}", t_seconds=t, top_k=3)
            batch.append(req)
            singles.append(vote(f"given-{i}", t, emb, hl, top_k=3))
        got = stub.VoteBatch(pb.VoteBatchRequest(votes=batch)).results
        for r, single in zip(got, singles):
            assert r.code == 0, r.error
            assert r.response == stub.Vote(single), f"hop {step}"
    assert [r.response.top[0].piece for r in got] == ["b", "c"]
    t, emb, hl = streams[0][0]

    def searched(sid: str, e: np.ndarray | None, **kw) -> pb.VoteRequest:
        req = pb.VoteRequest(session_id=sid, t_seconds=20.0, search_k=25, **kw)
        if e is not None:
            req.embedding.CopyFrom(to_tensor(e))
        return req

    bad = [
        searched("x-0", emb[None], hits=hl),  # hits and search_k
        searched("x-1", None),  # nothing to search with
        searched("x-2", np.ones((1, 16), np.float32)),  # not the library's dimension
        searched("x-3", np.full((1, 32), np.nan, np.float32)),
        searched("x-4", np.ones((2, 32), np.float32)),  # two windows in one vote
        searched("searched-0", emb[None]),  # fine
        searched("x-5", emb[None], library="nope"),
    ]
    bad[0].search_k = 25
    res = stub.VoteBatch(pb.VoteBatchRequest(votes=bad)).results
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [r.code for r in res] == [invalid] * 5 + [0, grpc.StatusCode.NOT_FOUND.value[0]], [
        r.error for r in res
    ]
    assert "no hits" in res[0].error and "no hits" in res[1].error and "32 finite" in res[2].error
    assert "32 finite" in res[3].error and "one vector" in res[4].error
    assert res[5].response.top[0].piece == "b"
    with pytest.raises(grpc.RpcError) as e:  # bounded: at most MAX_HITS neighbours
        stub.Vote(pb.VoteRequest(session_id="x-6", t_seconds=1.0, search_k=5000))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "search_k" in e.value.details()
    for sid in ("x-0", "x-2", "x-3", "x-4"):  # a refused vote started no session
        assert not stub.Close(pb.CloseRequest(session_id=sid)).existed


def test_a_piece_added_to_the_library_is_voted_for_at_once(redis_server, grpc_server, tmp_path):
    rng = np.random.default_rng(3)
    vecs = {p: unit_rows(rng, n) for p, n in PIECES.items()}
    lib_dir = write_core_library(tmp_path / "lib", vecs)
    stub = pbg.AggregatorStub(
        grpc.insecure_channel(grpc_server(register(servicer(redis_server, lib_dir))).address)
    )
    stub.Vote(vote("s", 0.5, vecs["a"][0], pb.HitList(hits=[pb.Hit(piece="a", score=0.9)])))
    write_core_library(lib_dir, {**vecs, "new": unit_rows(rng, 30)})  # as an ingest through the index does
    got = stub.Vote(vote("s", 1.0, vecs["a"][1], pb.HitList(hits=[pb.Hit(piece="new", score=0.95)] * 5)))
    assert got.top[0].piece == "new"


def test_vote_temperature_is_the_servers_setting(redis_server, grpc_server, lib_dir):
    """``aggregator.vote_temperature``: inf is the published scheme (one vote per hit, chance weights aside)."""
    lib = Library.open(lib_dir)
    t, emb, hl = next(w for w in windows(lib, "a", 3) if w[2].hits)
    answers = {}
    for temp in (float("inf"), 0.02):
        stub = pbg.AggregatorStub(
            grpc.insecure_channel(
                grpc_server(register(servicer(redis_server, lib_dir, vote_temperature=temp))).address
            )
        )
        answers[temp] = stub.Vote(vote(f"s-{temp}", t, emb, hl))
        eng = SessionEngine(lib, EngineSettings(vote_temperature=temp))
        assert answers[temp] == update_to_pb(
            eng.vote(t, emb, [(h.piece, h.score) for h in hl.hits]), t, 5, eng.n_voting
        )
    assert answers[float("inf")].top != answers[0.02].top
    with pytest.raises(ValueError, match="temperature"):
        servicer(redis_server, lib_dir, vote_temperature=0.0)


@pytest.mark.parametrize(
    "setting, word", [("vote_temperature: -1", "temperature"), ("evidence: anywhere", "evidence")]
)
def test_a_bad_engine_setting_in_the_config_is_a_one_line_error(tmp_path, setting, word):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"aggregator:\n  {setting}\n")
    p = subprocess.run(
        [sys.executable, "-m", "aggregator_svc", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and word in p.stderr and "Traceback" not in p.stderr


def test_sequence_evidence_settings_are_the_servers(redis_server, grpc_server, lib_dir):
    """``aggregator.sequence_weight`` / ``candidates`` / ``evidence`` reach every session's engine: the
    service answers as the offline engine with the same settings at every hop."""
    lib = Library.open(lib_dir)
    for evidence in ("piece", "library"):
        kw = dict(sequence_weight=0.5, candidates=3, evidence=evidence)
        stub = pbg.AggregatorStub(
            grpc.insecure_channel(grpc_server(register(servicer(redis_server, lib_dir, **kw))).address)
        )
        eng = SessionEngine(lib, EngineSettings(**kw))  # type: ignore[arg-type]
        for i, (t, emb, hl) in enumerate(windows(lib, "b", 12)):
            want = update_to_pb(reference(lib, eng.settings, t, emb, hl, eng), eng.t_last, 5, eng.n_voting)
            assert stub.Vote(vote(f"s-{evidence}", t, emb, hl)) == want, f"{evidence} hop {i}"
        stored = EngineStates(redis_server.client()).get(f"s-{evidence}")
        assert (
            SessionEngine.from_bytes(lib, stored.state).settings == eng.settings
        )  # the session runs with them
    with pytest.raises(ValueError, match="evidence"):
        servicer(redis_server, lib_dir, evidence="anywhere")


def test_a_cached_copy_gone_between_the_reads_is_read_from_redis(redis_server, lib_dir):
    """The version read skips the blob of a session this process holds decoded; when that copy is
    gone by the time the engine is restored (taken by a concurrent vote), the blob is read then —
    and a session changed meanwhile by another writer gets ABORTED, nothing written."""
    svc = servicer(redis_server, lib_dir, half_life=4.0, top_k=3)
    lib = Library.open(lib_dir)
    eng = SessionEngine(lib, EngineSettings(hop_s=0.5, half_life=4.0))
    hops = list(windows(lib, "a", 12, seed=5))
    for i, (t, emb, hl) in enumerate(hops[:10]):
        if i >= 4:  # the copy is "held" when the version is read, gone when the engine is restored
            svc._holds = lambda sid, version: True  # type: ignore[method-assign]
            svc._cache.clear()
        want = update_to_pb(reference(lib, eng.settings, t, emb, hl, eng), eng.t_last, 3, eng.n_voting)
        (got,) = svc._votes([vote("gone", t, emb, hl)])
        assert got == want, f"hop {i}"
    read = svc.states.get

    def changed_meanwhile(sid):  # another writer's vote lands between the two reads
        st = read(sid)
        svc.states.put(sid, st.version, st.state, st.library)
        return read(sid)

    svc.states.get = changed_meanwhile  # type: ignore[method-assign]
    svc._cache.clear()
    before = read("gone").version
    t, emb, hl = hops[10]
    (err,) = svc._votes([vote("gone", t, emb, hl)])
    assert err.code == grpc.StatusCode.ABORTED and read("gone").version == before + 1  # only the other write


def test_a_full_session_store_refuses_votes_and_keeps_live_sessions(redis_server, grpc_server, lib_dir):
    """Redis at maxmemory with noeviction (deploy/redis/redis.conf): votes get RESOURCE_EXHAUSTED,
    no live session is evicted to make room."""
    r = redis_server.client()
    stub = pbg.AggregatorStub(
        grpc.insecure_channel(grpc_server(register(servicer(redis_server, lib_dir))).address)
    )
    lib = Library.open(lib_dir)
    t, emb, hl = next(w for w in windows(lib, "a", 3) if w[2].hits)
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", str(int(r.info("memory")["used_memory"]) + 400_000))
    try:
        live = []
        with pytest.raises(grpc.RpcError) as e:
            for i in range(200):  # ~10 KB of state each: the store fills up
                stub.Vote(vote(f"fill-{i}", t, emb, hl))
                live.append(f"fill-{i}")
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "full" in e.value.details()
        assert live and all(r.exists(f"scoreid:session:{{{sid}}}:engine") for sid in live)
    finally:
        r.config_set("maxmemory", "0")
        r.flushall()
