"""The interceptors every service's ``grpc.aio`` server runs: the bearer token check and the error
shield, and :func:`public_details`, how an error message reaches a caller.

Handlers are coroutines (the encoder's) or blocking functions that the server runs in its thread
pool (the index's and the aggregator's); both kinds are checked and shielded alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import grpc

DENIED = "missing or wrong bearer token"
DENY_READ_S = 1.0  #: how long a refused stream waits for the client's first message


def bearer_of(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of an ``authorization: Bearer <token>`` header in call metadata ("" if none)."""
    got = str(dict(metadata or ()).get("authorization", ""))
    return got[7:] if got.startswith("Bearer ") else ""


def bearer_matches(got: str, tokens: Iterable[bytes]) -> bool:
    """Whether ``got`` is one of ``tokens`` (every one compared, in constant time each)."""
    g = got.encode()
    return any([hmac.compare_digest(g, t) for t in tokens])


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Reject calls without ``authorization: Bearer <token>`` (health checks stay open)."""

    OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")

    def __init__(self, tokens: Iterable[str]):
        self.tokens = [t.encode() for t in tokens if t]

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

        async def deny_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            # The client's first message is taken (within DENY_READ_S) before the refusal: a
            # grpc.aio client whose write races the end of the call can otherwise be told INTERNAL
            # instead of UNAUTHENTICATED (grpc/grpc#36066).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(context.read(), DENY_READ_S)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny_stream)

    def admits(self, handler_call_details: grpc.HandlerCallDetails) -> bool:
        """An open method (health, reflection), or a call with one of the tokens."""
        if handler_call_details.method.startswith(self.OPEN):
            return True
        got = bearer_of(handler_call_details.invocation_metadata)
        return bool(got) and bearer_matches(got, self.tokens)

    async def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        if self.admits(handler_call_details):
            return handler
        return self._deny_stream if handler is not None and handler.request_streaming else self._deny_unary


_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?/(?:[^\s'\"/:,;()]+/)*[^\s'\"/:,;()]*")
_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\blocalhost:\d+\b|\[[0-9a-fA-F:]+\](?::\d+)?")


def public_details(message: str) -> str:
    """An error message as a caller may see it: file-system paths and network addresses of the
    servers are replaced by ``<path>`` and ``<address>`` (the service's log keeps the original)."""
    return _ADDRESS.sub("<address>", _PATH.sub("<path>", message))


class ErrorShield(grpc.aio.ServerInterceptor):
    """An exception a handler did not turn into a status becomes ``INTERNAL`` with a fixed message
    (``grpc.aio`` would send ``Unexpected <type>: <the exception>``, paths and all); the exception
    goes to the service's log. An ``abort`` passes."""

    def __init__(self, service: str):
        self.service = service
        self.log = logging.getLogger(f"scoreid.{service}")

    def _unhandled(self) -> str:
        """Log the exception being handled; the fixed message the caller gets instead."""
        self.log.exception("unhandled error in %s", self.service)
        return f"internal error in the {self.service} service (logged there)"

    def _shield(self, fn: Callable) -> Callable:
        if inspect.isasyncgenfunction(fn):

            async def responses(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    async for r in fn(request, context):
                        yield r
                except grpc.aio.AbortError:
                    raise
                except Exception:  # noqa: BLE001 - every unhandled error, shielded
                    await context.abort(grpc.StatusCode.INTERNAL, self._unhandled())

            return responses
        if inspect.iscoroutinefunction(fn):

            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await fn(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception:  # noqa: BLE001
                    await context.abort(grpc.StatusCode.INTERNAL, self._unhandled())

            return call

        def blocking(request: Any, context: Any) -> Any:  # a unary call, in the server's thread pool
            try:
                return fn(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception:  # noqa: BLE001
                context.abort(grpc.StatusCode.INTERNAL, self._unhandled())

        return blocking

    async def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        h = await continuation(handler_call_details)
        kinds = (
            (
                (h.unary_unary, grpc.unary_unary_rpc_method_handler),
                (h.stream_stream, grpc.stream_stream_rpc_method_handler),
            )
            if h is not None
            else ()
        )
        for fn, make in kinds:
            asynchronous = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
            if fn is not None and (asynchronous or make is grpc.unary_unary_rpc_method_handler):
                return make(
                    self._shield(fn),
                    request_deserializer=h.request_deserializer,
                    response_serializer=h.response_serializer,
                )
        return h  # unary-stream / stream-unary / a blocking stream handler: none of ours
