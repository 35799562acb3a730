"""Aggregator over real gRPC + real Redis: replicas share sessions, errors are statuses, kill -9 recovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from svc_helpers import free_port

from aggregator_svc.server import AggregatorServicer, register
from aggregator_svc.store import RedisTallies
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid.identify.tally import VoteTally, window_votes
from scoreid.serve.grpc_server import wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def hits(*pieces: str) -> pb.HitList:
    return pb.HitList(
        hits=[
            pb.Hit(piece=p, score=0.9 - 0.01 * i, page=1, system=i, x=5.0 * i) for i, p in enumerate(pieces)
        ]
    )


def ref_votes(*pieces: str) -> dict[str, float]:
    """What ``hits(*pieces)`` votes, by the core's rule (chance weight unset = 1; scores are float32)."""
    return window_votes([(p, float(np.float32(0.9 - 0.01 * i)), 0.0) for i, p in enumerate(pieces)])


def test_two_replicas_serve_the_same_sessions(redis_server, grpc_server):
    servers = [
        grpc_server(register(AggregatorServicer(RedisTallies(redis_server.client()), 4.0, 3)))
        for _ in range(2)
    ]
    stubs = [pbg.AggregatorStub(grpc.insecure_channel(s.address)) for s in servers]
    ref = VoteTally(half_life=4.0)
    for i in range(20):
        pieces = ("a", "a", "b") if i < 10 else ("c", "c", "c", "b")
        ref.update(ref_votes(*pieces), i * 0.5)
        resp = stubs[i % 2].Vote(pb.VoteRequest(session_id="shared", t_seconds=i * 0.5, hits=hits(*pieces)))
        assert [(t.piece, pytest.approx(t.votes)) for t in resp.top] == ref.top(3)
        assert resp.position.piece == ref.top(1)[0][0]
    got = stubs[0].Get(pb.GetRequest(session_id="shared"))
    assert [t.piece for t in got.top] == [p for p, _ in ref.top(3)]
    assert stubs[1].Close(pb.CloseRequest(session_id="shared")).existed
    assert not stubs[0].Close(pb.CloseRequest(session_id="shared")).existed
    # health + reflection are registered on every service
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(servers[0].address))
    assert h.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING


def test_bad_requests_are_invalid_argument(redis_server, grpc_server):
    s = grpc_server(register(AggregatorServicer(RedisTallies(redis_server.client()))))
    stub = pbg.AggregatorStub(grpc.insecure_channel(s.address))
    with pytest.raises(grpc.RpcError) as e:
        stub.Vote(pb.VoteRequest(session_id="", t_seconds=0, hits=hits("a")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "session_id" in e.value.details()
    stub.Vote(pb.VoteRequest(session_id="s", t_seconds=3, hits=hits("a")))
    with pytest.raises(grpc.RpcError) as e:
        stub.Vote(pb.VoteRequest(session_id="s", t_seconds=1, hits=hits("a")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "backwards" in e.value.details()


def test_redis_down_is_unavailable(redis_server, grpc_server):
    import redis as redis_lib

    client = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    s = grpc_server(register(AggregatorServicer(RedisTallies(client))))
    stub = pbg.AggregatorStub(grpc.insecure_channel(s.address))
    with pytest.raises(grpc.RpcError) as e:
        stub.Vote(pb.VoteRequest(session_id="s", t_seconds=0, hits=hits("a")))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "redis" in e.value.details()


def start_aggregator_process(redis_url: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, SCOREID__REDIS__URL=redis_url, SCOREID__AGGREGATOR__PORT=str(port),
               SCOREID__AGGREGATOR__METRICS_PORT="0", SCOREID__AGGREGATOR__HALF_LIFE_S="10.0")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "aggregator_svc"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=20)
    except TimeoutError:
        proc.kill()
        raise AssertionError(
            proc.stderr.read().decode() if proc.stderr else "aggregator did not start"
        ) from None
    return proc


def test_kill_9_mid_stream_is_unavailable_and_a_restart_continues_from_redis(redis_server):
    port = free_port()
    proc = start_aggregator_process(redis_server.url, port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pbg.AggregatorStub(channel)
    ref = VoteTally(half_life=10.0)
    try:
        for i in range(6):
            stub.Vote(pb.VoteRequest(session_id="live", t_seconds=i * 0.5, hits=hits("x", "y", "x")))
            ref.update(ref_votes("x", "y", "x"), i * 0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with pytest.raises(grpc.RpcError) as e:
            stub.Vote(pb.VoteRequest(session_id="live", t_seconds=3.0, hits=hits("x")), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        proc = start_aggregator_process(redis_server.url, port)
        resp = stub.Vote(
            pb.VoteRequest(session_id="live", t_seconds=3.5, hits=hits("y")), wait_for_ready=True, timeout=10
        )
        ref.update(ref_votes("y"), 3.5)
        assert [(t.piece, pytest.approx(t.votes)) for t in resp.top] == ref.top(5)
    finally:
        channel.close()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        time.sleep(0)


def test_a_window_without_hits_changes_nothing(redis_server, grpc_server):
    s = grpc_server(register(AggregatorServicer(RedisTallies(redis_server.client()), 2.0)))
    stub = pbg.AggregatorStub(grpc.insecure_channel(s.address))
    a = stub.Vote(pb.VoteRequest(session_id="q", t_seconds=1.0, hits=hits("a", "a", "b")))
    b = stub.Vote(pb.VoteRequest(session_id="q", t_seconds=9.0, hits=pb.HitList()))
    want = ref_votes("a", "a", "b")
    assert b == a and a.total == pytest.approx(sum(want.values()))
    assert a.top[0].score == pytest.approx(want["a"] / sum(want.values()))


def test_vote_batch_equals_single_votes_and_isolates_bad_votes(redis_server, grpc_server):
    s = grpc_server(register(AggregatorServicer(RedisTallies(redis_server.client()), 4.0, 3)))
    stub = pbg.AggregatorStub(grpc.insecure_channel(s.address))
    windows = [hits("a", "b", "a"), hits("b", "b", "c"), hits(), hits("c", "a", "c")]
    for step, hl in enumerate(windows):  # sessions "one-*" by VoteBatch, "single-*" by Vote
        batch = [
            pb.VoteRequest(session_id=f"one-{i}", t_seconds=0.5 * step + i, hits=hl, top_k=3)
            for i in range(3)
        ]
        got = stub.VoteBatch(pb.VoteBatchRequest(votes=batch)).results
        assert len(got) == 3
        for i, r in enumerate(got):
            assert r.code == 0, r.error
            ref = stub.Vote(
                pb.VoteRequest(session_id=f"single-{i}", t_seconds=0.5 * step + i, hits=hl, top_k=3)
            )
            assert r.response == ref
    bad = [
        pb.VoteRequest(session_id="one-0", t_seconds=0.0, hits=hits("a")),  # time went backwards
        pb.VoteRequest(session_id="", t_seconds=9.0, hits=hits("a")),
        pb.VoteRequest(session_id="one-1", t_seconds=9.0, hits=hits("a")),  # fine
        pb.VoteRequest(session_id="one-1", t_seconds=9.5, hits=hits("a")),  # a second vote for one session
    ]
    res = stub.VoteBatch(pb.VoteBatchRequest(votes=bad)).results
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [r.code for r in res] == [invalid, invalid, 0, invalid]
    assert "backwards" in res[0].error and "session_id" in res[1].error and "one vote" in res[3].error
    assert res[2].response.t_seconds == 9.0 and res[2].response.top[0].piece == "a"
    assert stub.VoteBatch(pb.VoteBatchRequest()).results == []


def test_vote_batch_with_redis_down_is_unavailable(grpc_server):
    import redis as redis_lib

    client = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    s = grpc_server(register(AggregatorServicer(RedisTallies(client))))
    stub = pbg.AggregatorStub(grpc.insecure_channel(s.address))
    with pytest.raises(grpc.RpcError) as e:
        stub.VoteBatch(
            pb.VoteBatchRequest(votes=[pb.VoteRequest(session_id="s", t_seconds=0, hits=hits("a"))])
        )
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "redis" in e.value.details()


def test_vote_temperature_is_the_servers_setting(redis_server, grpc_server):
    """``aggregator.vote_temperature``: inf is the published scheme (one vote per hit)."""
    published = grpc_server(
        register(AggregatorServicer(RedisTallies(redis_server.client()), 4.0, 3, float("inf")))
    )
    sharp = grpc_server(register(AggregatorServicer(RedisTallies(redis_server.client()), 4.0, 3, 0.02)))
    window = hits("a", "b", "b")
    got = pbg.AggregatorStub(grpc.insecure_channel(published.address)).Vote(
        pb.VoteRequest(session_id="pub", t_seconds=1.0, hits=window)
    )
    assert {t.piece: t.votes for t in got.top} == pytest.approx({"a": 1.0, "b": 2.0})
    got = pbg.AggregatorStub(grpc.insecure_channel(sharp.address)).Vote(
        pb.VoteRequest(session_id="sharp", t_seconds=1.0, hits=window)
    )
    want = ref_votes("a", "b", "b")
    assert want["a"] > want["b"] and {t.piece: t.votes for t in got.top} == pytest.approx(want)
    with pytest.raises(ValueError, match="vote_temperature"):
        AggregatorServicer(RedisTallies(redis_server.client()), vote_temperature=0.0)


def test_a_bad_vote_temperature_in_the_config_is_a_one_line_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("aggregator:\n  vote_temperature: -1\n")
    p = subprocess.run([sys.executable, "-m", "aggregator_svc", "--config", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 2 and "vote_temperature" in p.stderr and "Traceback" not in p.stderr
