"""Error details a caller sees carry no server paths or addresses (a finding of the security
review): an unhandled exception is INTERNAL with a fixed message, a status's message is redacted, and the
service log keeps the original. Real gRPC servers on loopback."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator_svc.libraries import Libraries
from aggregator_svc.server import AggregatorServicer, register
from aggregator_svc.store import EngineStates
from ops.grpc_server import build_server, public_details
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg


def test_paths_and_addresses_are_redacted():
    assert (
        public_details("cannot read '/srv/scoreid/libs/x/library.json': gone") == "cannot read '<path>': gone"
    )
    assert public_details("Error 111 connecting to 10.1.2.3:6379.") == "Error 111 connecting to <address>."
    for keep in ("hop_seconds must be 0.05..10.0, got -1.0", "at most 1024 votes per VoteBatch", "k/v"):
        assert public_details(keep) == keep


def test_a_failing_service_tells_the_caller_nothing_of_its_files(redis_server, tmp_path, caplog):
    missing = tmp_path / "secret-place" / "lib"  # configured, but not there
    svc = AggregatorServicer(EngineStates(redis_server.client()), Libraries({"lib": str(missing)}))

    def boom(request, context):  # an error no handler turned into a status
        raise RuntimeError(f"failed reading {tmp_path}/secret-place/state.bin")

    svc.Get = boom  # type: ignore[method-assign]
    server, port = build_server(register(svc), "127.0.0.1:0", service="aggregator")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pbg.AggregatorStub(ch)
            with pytest.raises(grpc.RpcError) as e:  # the library cannot be opened: a status, redacted
                stub.Vote(
                    pb.VoteRequest(
                        session_id="s",
                        t_seconds=1.0,
                        library="lib",
                        hits=pb.HitList(hits=[pb.Hit(piece="a", score=0.5)]),
                    )
                )
            assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)
            assert str(tmp_path) not in e.value.details() and "secret-place" not in e.value.details()
            with caplog.at_level("ERROR"), pytest.raises(grpc.RpcError) as e:
                stub.Get(pb.GetRequest(session_id="s"))
            assert e.value.code() == grpc.StatusCode.INTERNAL and "secret-place" not in e.value.details()
            assert "internal error in the aggregator service" in e.value.details()
            assert any("secret-place" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(None)


def test_the_server_shields_authenticates_and_stops_gracefully(tmp_path, caplog):
    """``build_server`` with coroutine handlers: the bearer token check (health open), an unhandled
    exception is INTERNAL with the fixed message (logged in full), and ``stop(grace)`` lets a call
    in flight finish."""
    import asyncio
    import threading
    import time

    from ops.grpc_server import add_standard_services

    async def get(request, context):  # an error no handler turned into a status
        raise RuntimeError(f"failed reading {tmp_path}/secret-place/state.bin")

    async def close(request, context):  # slow: still running when the server is told to stop
        await asyncio.sleep(0.5)
        return pb.CloseResponse(existed=True)

    def unary(fn, request, response):
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
        )

    def register_(server):
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "scoreid.v1.Aggregator",
                    {
                        "Get": unary(get, pb.GetRequest, pb.VoteResponse),
                        "Close": unary(close, pb.CloseRequest, pb.CloseResponse),
                    },
                )
            ]
        )
        return add_standard_services(server, ["scoreid.v1.Aggregator"])

    server, port = build_server(register_, "127.0.0.1:0", token="s3cret-token-0123", service="aggregator")
    server.start()
    auth = [("authorization", "Bearer s3cret-token-0123")]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pbg.AggregatorStub(ch)
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            stub.Get(pb.GetRequest(session_id="s"))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with caplog.at_level("ERROR"), pytest.raises(grpc.RpcError) as e:
            stub.Get(pb.GetRequest(session_id="s"), metadata=auth)
        assert e.value.code() == grpc.StatusCode.INTERNAL and "secret-place" not in e.value.details()
        assert "internal error in the aggregator service" in e.value.details()
        assert any("secret-place" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
        got: list = []
        t = threading.Thread(
            target=lambda: got.append(stub.Close(pb.CloseRequest(), metadata=auth, timeout=10))
        )
        t.start()
        time.sleep(0.2)
        assert server.stop(grace=5).wait(10)  # the loop's thread has ended ...
        t.join(10)
    assert got and got[0].existed  # ... after the call in flight finished
