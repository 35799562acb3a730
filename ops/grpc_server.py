"""Building a service's gRPC server: health checking, reflection, limits, TLS and bearer token.

Every service calls :func:`build_server`; it registers the standard ``grpc.health.v1.Health``
service (all listed services SERVING) and server reflection, caps message sizes, and
optionally requires TLS and an ``authorization: Bearer <token>`` header on every call.

Two kinds of server (``server=``): ``threads``, a ``grpc.server`` whose handlers run in a thread
pool (a thread per open stream), and ``asyncio``, a ``grpc.aio`` server whose handlers are
coroutines on one event loop; :class:`AsyncioServer` runs that loop in a thread of its own and is
started and stopped like a ``grpc.Server``. Both get the same interceptors (bearer token, error
shield), options, limits and standard services.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scoreid.errors import UserError

DENIED = "missing or wrong bearer token"


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Reject calls without ``authorization: Bearer <token>`` (health checks stay open)."""

    OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")

    def __init__(self, tokens: Iterable[str]):
        self.tokens = [t.encode() for t in tokens if t]
        deny = self._deny()
        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny)

    def _deny(self) -> Callable[[Any, Any], Any]:
        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

        return deny

    def admits(self, handler_call_details: grpc.HandlerCallDetails) -> bool:
        """An open method (health, reflection), or a call with one of the tokens."""
        if handler_call_details.method.startswith(self.OPEN):
            return True
        got = bearer_of(handler_call_details.invocation_metadata)
        return bool(got) and bearer_matches(got, self.tokens)

    def denial(self, handler: Any) -> Any:
        """The handler that refuses a call to ``handler``'s method (a stream one for a stream)."""
        return self._deny_stream if handler is not None and handler.request_streaming else self._deny_unary

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if self.admits(handler_call_details):
            return continuation(handler_call_details)
        return self.denial(continuation(handler_call_details))


class AioBearerTokenInterceptor(BearerTokenInterceptor, grpc.aio.ServerInterceptor):
    """:class:`BearerTokenInterceptor` for a ``grpc.aio`` server."""

    def _deny(self) -> Callable[[Any, Any], Any]:
        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

        return deny

    async def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        if self.admits(handler_call_details):
            return await continuation(handler_call_details)
        return self.denial(await continuation(handler_call_details))


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

    def _unhandled(self) -> str:
        """Log the exception being handled; the fixed message the caller gets instead."""
        self.log.exception("unhandled error in %s", self.service)
        return f"internal error in the {self.service} service (logged there)"

    def _shielded(self, context: grpc.ServicerContext, e: Exception) -> None:
        if context.code() is not None:  # context.abort(...) already set the status
            raise e
        context.abort(grpc.StatusCode.INTERNAL, self._unhandled())

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


class AioErrorShield(ErrorShield, grpc.aio.ServerInterceptor):
    """:class:`ErrorShield` for a ``grpc.aio`` server (whose default would send ``Unexpected <type>:
    <the exception>``): coroutine and async-generator handlers are shielded; an ``abort`` passes."""

    async def _shielded_aio(self, context: grpc.aio.ServicerContext, e: Exception) -> None:
        if isinstance(e, grpc.aio.AbortError) or context.code() is not None:
            raise e
        await context.abort(grpc.StatusCode.INTERNAL, self._unhandled())

    def _shield(self, fn: Callable) -> Callable:
        if inspect.isasyncgenfunction(fn):

            async def responses(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    async for r in fn(request, context):
                        yield r
                except Exception as e:  # noqa: BLE001 - every unhandled error, shielded
                    await self._shielded_aio(context, e)

            return responses

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await fn(request, context)
            except Exception as e:  # noqa: BLE001
                await self._shielded_aio(context, e)

        return call

    async def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        h = await continuation(handler_call_details)
        kinds = ((h.unary_unary, grpc.unary_unary_rpc_method_handler),
                 (h.stream_stream, grpc.stream_stream_rpc_method_handler)) if h is not None else ()  # fmt: skip
        for fn, make in kinds:
            if fn is not None and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
                return make(self._shield(fn), request_deserializer=h.request_deserializer,
                            response_serializer=h.response_serializer)  # fmt: skip
        return h  # unary-stream / stream-unary, or a blocking handler: none of ours


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


def _standard_services(server: Any, service_names: Iterable[str], hs: Any) -> list[str]:
    """Register the health servicer ``hs`` and reflection; returns the names health says SERVING for."""
    names = list(service_names)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return [*names, ""]


def add_standard_services(server: grpc.Server, service_names: Iterable[str]) -> health.HealthServicer:
    """Register grpc.health.v1 (the listed services and "" SERVING) and server reflection."""
    hs = health.HealthServicer()
    for n in _standard_services(server, service_names, hs):
        hs.set(n, health_pb2.HealthCheckResponse.SERVING)
    return hs


async def add_standard_services_aio(server: grpc.aio.Server, service_names: Iterable[str]) -> Any:
    """:func:`add_standard_services` on a ``grpc.aio`` server (its asyncio health servicer)."""
    hs = health.aio.HealthServicer()
    for n in _standard_services(server, service_names, hs):
        await hs.set(n, health_pb2.HealthCheckResponse.SERVING)
    return hs


class Serving(Protocol):
    """What starting and stopping a service needs of its server: a ``grpc.Server`` or an
    :class:`AsyncioServer`."""

    def start(self) -> None: ...

    def stop(self, grace: float | None) -> Any: ...


class _Finished:
    """What :meth:`AsyncioServer.stop` returns: ``wait()`` until the loop's thread has ended."""

    def __init__(self, thread: threading.Thread):
        self.thread = thread

    def wait(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


class AsyncioServer:
    """A ``grpc.aio`` server on an event loop in a thread of its own, started and stopped like a
    ``grpc.Server``: ``start()``, and ``stop(grace)``, whose result's ``wait()`` returns once the
    server has stopped and the loop has ended (its tasks cancelled, its default executor shut down).
    ``build``, a coroutine function run on the loop, makes the server and returns (server, port)."""

    def __init__(self, build: Callable[[], Awaitable[tuple[Any, int]]], name: str = "grpc-asyncio"):
        self.server: Any = None
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(build),), name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    async def _main(self, build: Callable[[], Awaitable[tuple[Any, int]]]) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            self.server, self.port = await build()
        except BaseException as e:  # noqa: BLE001 - raised in the thread that built the server
            self._error = e
            return
        finally:
            self._ready.set()
        await self._stopped.wait()

    def _run(self, coro: Awaitable[Any]) -> futures.Future:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def start(self) -> None:
        self._run(self.server.start()).result()

    def stop(self, grace: float | None) -> _Finished:
        """Stop accepting calls, let those in flight finish for ``grace`` seconds (None: cancel them now)."""

        async def stop() -> None:
            await self.server.stop(grace)
            self._stopped.set()

        if self._thread.is_alive():
            self._run(stop())
        return _Finished(self._thread)


SERVER_KINDS = ("threads", "asyncio")


def _bind(server: Any, address: str, credentials: grpc.ServerCredentials | None) -> int:
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise UserError(f"cannot listen on {address}")
    return int(port)


def build_server(
    register: Callable[[Any], Any],
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
    server: str = "threads",
) -> tuple[Serving, int]:
    """A server (not yet started) bound to ``address``; returns (server, bound port).

    ``register`` adds the servicers and, via :func:`add_standard_services`, health and reflection;
    for ``server="asyncio"`` it gets the ``grpc.aio`` server, on the loop, and may be a coroutine
    function (:func:`add_standard_services_aio`). ``workers``: the threads of a ``threads`` server.
    """
    if server not in SERVER_KINDS:
        raise UserError(f"{service}: unknown server {server!r}: one of {', '.join(SERVER_KINDS)}")
    tokens = [token] if isinstance(token, str) else list(token)
    credentials = server_credentials(tls_cert, tls_key) if tls_cert or tls_key else None
    opts = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        *(options or []),
    ]
    if server == "asyncio":

        async def build() -> tuple[Any, int]:
            auth: list[Any] = [AioBearerTokenInterceptor(tokens)] if any(tokens) else []
            aio = grpc.aio.server(interceptors=[*auth, AioErrorShield(service)], options=opts,
                                  maximum_concurrent_rpcs=maximum_concurrent_rpcs)  # fmt: skip
            added = register(aio)
            if inspect.isawaitable(added):
                await added
            return aio, _bind(aio, address, credentials)

        served = AsyncioServer(build, name=f"{service}-asyncio")
        return served, served.port
    interceptors: list[grpc.ServerInterceptor] = [BearerTokenInterceptor(tokens)] if any(tokens) else []
    interceptors.append(ErrorShield(service))
    threaded = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=interceptors,
        options=opts,
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,  # beyond it: RESOURCE_EXHAUSTED, not a hang
    )
    register(threaded)
    return threaded, _bind(threaded, address, credentials)


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


def serve_until_signal(server: Serving, grace: float = 2.0) -> None:
    """Block until SIGTERM or SIGINT, then stop ``server`` letting in-flight RPCs finish (``grace`` s)."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=grace).wait()
