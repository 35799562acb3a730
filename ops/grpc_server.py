"""Building a service's gRPC server: health checking, reflection, limits, TLS and bearer token.

Every service calls :func:`build_server`: a ``grpc.aio`` server whose handlers are coroutines on
one event loop (the encoder's streams) or blocking functions run in its thread pool (``workers``;
the index's and the aggregator's unary calls). :class:`AsyncioServer` runs that loop in a thread
of its own and is started and stopped like a ``grpc.Server``. The server registers the standard
``grpc.health.v1.Health`` service (all listed services SERVING) and server reflection, caps
message sizes, and optionally requires TLS and an ``authorization: Bearer <token>`` header on
every call (``ops.interceptors``, with the error shield).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ops.interceptors import BearerTokenInterceptor, ErrorShield
from ops.interceptors import bearer_of as bearer_of
from ops.interceptors import public_details as public_details
from scoreid.errors import UserError


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


async def add_standard_services(server: grpc.aio.Server, service_names: Iterable[str]) -> Any:
    """Register grpc.health.v1 (the listed services and "" SERVING) and server reflection."""
    names = list(service_names)
    hs = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    for n in [*names, ""]:
        await hs.set(n, health_pb2.HealthCheckResponse.SERVING)
    return hs


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
    server has stopped and the loop has ended (its tasks cancelled, its default executor and the
    ``workers`` threads of blocking handlers shut down). ``build(pool)``, a coroutine function run
    on the loop, makes the server on that thread pool and returns (server, port)."""

    def __init__(
        self,
        build: Callable[[futures.ThreadPoolExecutor], Awaitable[tuple[Any, int]]],
        name: str = "grpc-asyncio",
        workers: int = 16,
    ):
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-worker")
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

    async def _main(self, build: Callable[[futures.ThreadPoolExecutor], Awaitable[tuple[Any, int]]]) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            self.server, self.port = await build(self.pool)
        except BaseException as e:  # noqa: BLE001 - raised in the thread that built the server
            self._error = e
            self.pool.shutdown(wait=False)
            return
        finally:
            self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            self.pool.shutdown(wait=False)

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
) -> tuple[AsyncioServer, int]:
    """A server (not yet started) bound to ``address``; returns (server, bound port).

    ``register`` gets the ``grpc.aio`` server, on its loop, and adds the servicers and, with
    :func:`add_standard_services`, health and reflection; it may return an awaitable (awaited).
    ``workers``: the threads that run blocking handlers. Calls beyond ``maximum_concurrent_rpcs``
    are refused with RESOURCE_EXHAUSTED, not queued.
    """
    tokens = [token] if isinstance(token, str) else list(token)
    credentials = server_credentials(tls_cert, tls_key) if tls_cert or tls_key else None
    opts = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        *(options or []),
    ]

    async def build(pool: futures.ThreadPoolExecutor) -> tuple[Any, int]:
        auth: list[Any] = [BearerTokenInterceptor(tokens)] if any(tokens) else []
        server = grpc.aio.server(
            pool,
            interceptors=[*auth, ErrorShield(service)],
            options=opts,
            maximum_concurrent_rpcs=maximum_concurrent_rpcs,
        )
        added = register(server)
        if inspect.isawaitable(added):
            await added
        return server, _bind(server, address, credentials)

    served = AsyncioServer(build, name=f"{service}-asyncio", workers=workers)
    return served, served.port


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


def serve_until_signal(server: AsyncioServer, grace: float = 2.0) -> None:
    """Block until SIGTERM or SIGINT, then stop ``server`` letting in-flight RPCs finish (``grace`` s)."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=grace).wait()
