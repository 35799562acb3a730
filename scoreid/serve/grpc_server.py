"""Building a service's gRPC server: health checking, reflection, limits, TLS and bearer token.

Every service calls :func:`build_server`; it registers the standard ``grpc.health.v1.Health``
service (all listed services SERVING) and server reflection, caps message sizes, and
optionally requires TLS and an ``authorization: Bearer <token>`` header on every call.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scoreid.errors import UserError


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Reject calls without ``authorization: Bearer <token>`` (health checks stay open)."""

    OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")

    def __init__(self, token: str):
        self.token = token.encode()

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny)

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method.startswith(self.OPEN):
            return continuation(handler_call_details)
        md = dict(handler_call_details.invocation_metadata or ())
        got = str(md.get("authorization", ""))
        if got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(), self.token):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is not None and handler.request_streaming:
            return self._deny_stream
        return self._deny_unary


class _Metadata(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, metadata: list[tuple[str, str]]):
        self.metadata = metadata

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        md = [*(details.metadata or []), *self.metadata]
        new = details._replace(metadata=md) if hasattr(details, "_replace") else _Details(details, md)
        return continuation(new, request)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, d: Any, metadata: list[tuple[str, str]]):
        self.method, self.timeout, self.metadata = d.method, d.timeout, metadata
        self.credentials, self.wait_for_ready = d.credentials, d.wait_for_ready
        self.compression = getattr(d, "compression", None)


def internal_channel(address: str, token: str = "", **kw: Any) -> grpc.Channel:
    """A channel to an internal service that sends the internal bearer token on every call."""
    ch = grpc.insecure_channel(address, **kw)
    return grpc.intercept_channel(ch, _Metadata([("authorization", f"Bearer {token}")])) if token else ch


def server_credentials(cert: str, key: str) -> grpc.ServerCredentials:
    for p in (cert, key):
        if not Path(p).is_file():
            raise UserError(f"TLS file not found: {p}")
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])


def add_standard_services(server: grpc.Server, service_names: Iterable[str]) -> health.HealthServicer:
    """Register grpc.health.v1 (the listed services and "" SERVING) and server reflection."""
    names = list(service_names)
    hs = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    for n in [*names, ""]:
        hs.set(n, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return hs


def build_server(
    register: Callable[[grpc.Server], None],
    address: str,
    *,
    workers: int = 16,
    max_message_bytes: int = 4 << 20,
    token: str = "",
    tls_cert: str = "",
    tls_key: str = "",
    options: list[tuple[str, Any]] | None = None,
    maximum_concurrent_rpcs: int | None = None,
) -> tuple[grpc.Server, int]:
    """A server (not yet started) bound to ``address``; returns (server, bound port).

    ``register`` adds the servicers and, via :func:`add_standard_services`, health and reflection.
    """
    interceptors = [BearerTokenInterceptor(token)] if token else []
    opts = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        *(options or []),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=interceptors,
        options=opts,
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,  # beyond it: RESOURCE_EXHAUSTED, not a hang
    )
    register(server)
    if tls_cert or tls_key:
        port = server.add_secure_port(address, server_credentials(tls_cert, tls_key))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise UserError(f"cannot listen on {address}")
    return server, port


def wait_healthy(address: str, timeout: float = 10.0, service: str = "") -> None:
    """Block until the server at ``address`` answers SERVING on the health service."""
    import time

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as e:
                last = e
            time.sleep(0.05)
    raise TimeoutError(f"{address} not healthy within {timeout} s ({last})")


def serve_until_signal(server: grpc.Server, grace: float = 2.0) -> None:
    """Block until SIGTERM or SIGINT, then stop ``server`` letting in-flight RPCs finish (``grace`` s)."""
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=grace).wait()
