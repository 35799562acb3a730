"""The test fixtures start real servers (a real redis-server, a real gRPC server)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def test_redis_fixture_is_a_real_server(redis_server):
    r = redis_server.client()
    info = r.info("server")
    assert info["redis_version"]
    assert int(info["tcp_port"]) == redis_server.port
    r.set(b"k", b"v")
    assert r.get(b"k") == b"v"
    assert r.config_get("appendonly")["appendonly"] == "yes"


def test_grpc_fixture_serves_health_over_a_real_port(grpc_server):
    servicer = health.HealthServicer()
    servicer.set("scoreid.Test", health_pb2.HealthCheckResponse.SERVING)
    srv = grpc_server(lambda s: health_pb2_grpc.add_HealthServicer_to_server(servicer, s))
    with grpc.insecure_channel(srv.address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        resp = stub.Check(health_pb2.HealthCheckRequest(service="scoreid.Test"), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        try:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
            raise AssertionError("unknown service must fail")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND
