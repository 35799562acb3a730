"""Building a service's gRPC server: health checking, reflection, limits, TLS and bearer token.

Every service calls :func:`build_server`; it registers the standard ``grpc.health.v1.Health``
service (all listed services SERVING) and server reflection, caps message sizes, and
optionally requires TLS and an ``authorization: Bearer <token>`` header on every call.
"""

from __future__ import annotations

import hmac
import logging
import re
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

    def __init__(self, tokens: Iterable[str]):
        self.tokens = [t.encode() for t in tokens if t]

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny)

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method.startswith(self.OPEN):
            return continuation(handler_call_details)
        got = bearer_of(handler_call_details.invocation_metadata)
        if got and bearer_matches(got, self.tokens):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is not None and handler.request_streaming:
            return self._deny_stream
        return self._deny_unary


_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?/(?:[^\s'\"/:,;()]+/)*[^\s'\"/:,;()]*")
_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\blocalhost:\d+\b|\[[0-9a-fA-F:]+\](?::\d+)?")


def public_details(message: str) -> str:
    """An error message as a caller may see it: file-system paths and network addresses of the
    servers are replaced by ``<path>`` and ``<address>`` (the service's log keeps the original)."""
    return _ADDRESS.sub("<address>", _PATH.sub("<path>", message))


class ErrorShield(grpc.ServerInterceptor):
    """An exception a handler did not turn into a status becomes ``INTERNAL`` with a fixed message
    (gRPC would send ``Exception calling application: <the exception>``, paths and all); the
    exception goes to the service's log."""

    def __init__(self, service: str):
        self.service = service
        self.log = logging.getLogger(f"scoreid.{service}")

    def _shielded(self, context: grpc.ServicerContext, e: Exception) -> None:
        if context.code() is not None:  # context.abort(...) already set the status
            raise e
        self.log.exception("unhandled error in %s", self.service)
        context.abort(
            grpc.StatusCode.INTERNAL, f"internal error in the {self.service} service (logged there)"
        )

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        h = continuation(handler_call_details)
        if h is None:
            return h
        kw = {"request_deserializer": h.request_deserializer, "response_serializer": h.response_serializer}
        if h.unary_unary:
            fn = h.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return fn(request, context)
                except Exception as e:  # noqa: BLE001 - every unhandled error, shielded
                    self._shielded(context, e)

            return grpc.unary_unary_rpc_method_handler(unary, **kw)
        if h.stream_stream:
            gen = h.stream_stream

            def streams(requests: Any, context: grpc.ServicerContext) -> Any:
                try:
                    yield from gen(requests, context)
                except Exception as e:  # noqa: BLE001
                    self._shielded(context, e)

            return grpc.stream_stream_rpc_method_handler(streams, **kw)
        return h  # unary-stream / stream-unary: none of ours


def bearer_of(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of an ``authorization: Bearer <token>`` header in call metadata ("" if none)."""
    got = str(dict(metadata or ()).get("authorization", ""))
    return got[7:] if got.startswith("Bearer ") else ""


def bearer_matches(got: str, tokens: Iterable[bytes]) -> bool:
    """Whether ``got`` is one of ``tokens`` (every one compared, in constant time each)."""
    g = got.encode()
    return any([hmac.compare_digest(g, t) for t in tokens])


def keepalive_options(keepalive_s: float) -> list[tuple[str, Any]]:
    """HTTP/2 keepalive: the server pings a connection every ``keepalive_s`` seconds and drops it
    when the ping is not answered within half that (a vanished peer frees its streams); clients
    may ping at most every 5 s, and abusive pingers are disconnected."""
    ms = int(keepalive_s * 1000)
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", max(1000, ms // 2)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_ping_strikes", 2),
    ]


LOOPBACK = ("127.0.0.1", "::1", "localhost", "[::1]")


def check_transport(service: str, host: str, credential: bool, tls: bool, allow_insecure: bool) -> None:
    """A credential sent in clear text is refused at start: a service that requires a token on a
    non-loopback address without TLS does not start unless ``allow_insecure`` says the network is
    protected otherwise (a private network, a NetworkPolicy, a mesh with mTLS)."""
    if credential and not tls and host not in LOOPBACK and not allow_insecure:
        raise UserError(
            f"{service}: a bearer token on {host} without TLS would travel in clear text; set "
            f"TLS, listen on 127.0.0.1, or set allow_insecure: true if the network is protected otherwise"
        )


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
    token: str | Iterable[str] = "",
    tls_cert: str = "",
    tls_key: str = "",
    options: list[tuple[str, Any]] | None = None,
    maximum_concurrent_rpcs: int | None = None,
    service: str = "scoreid",
) -> tuple[grpc.Server, int]:
    """A server (not yet started) bound to ``address``; returns (server, bound port).

    ``register`` adds the servicers and, via :func:`add_standard_services`, health and reflection.
    """
    tokens = [token] if isinstance(token, str) else list(token)
    interceptors: list[grpc.ServerInterceptor] = [BearerTokenInterceptor(tokens)] if any(tokens) else []
    interceptors.append(ErrorShield(service))
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
