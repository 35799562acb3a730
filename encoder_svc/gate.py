"""Who may open a stream: the caps on open streams (:class:`SessionGate`), the caller's identity
for the per-client cap (:func:`client_of`), and :class:`StreamAbort`, the status a stream ends with."""

from __future__ import annotations

import hmac
import threading
from collections import Counter

import grpc

from ops.grpc_server import bearer_of


class StreamAbort(Exception):
    """The status (code and message) a stream ends with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def rpc_abort(what: str, e: grpc.RpcError) -> StreamAbort:
    """An internal call's failure as the client's status: the callee down or slow -> UNAVAILABLE."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return StreamAbort(grpc.StatusCode.UNAVAILABLE, f"{what} unavailable: {details}")
    return StreamAbort(code, f"{what}: {details}")


class SessionGate:
    """Caps on open streams: those still waiting for their options (``pending``), and sessions —
    in all and per client. A stream over a cap is refused at once, so the server's concurrent-RPC
    limit (sessions + pending + a reserve) always leaves room for health checks."""

    def __init__(self, per_client: int, total: int, pending: int = 32):
        self.per_client, self.total, self.max_pending = per_client, total, pending
        self.by_client: Counter[str] = Counter()
        self.pending = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        """A new stream, before its options: refused when ``pending`` streams already wait."""
        with self.lock:
            if self.pending >= self.max_pending:
                raise StreamAbort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"server has {self.max_pending} streams waiting for their options (the limit)",
                )
            self.pending += 1

    def entered(self) -> None:
        """The stream's options arrived (or it ended before): it no longer counts as pending."""
        with self.lock:
            self.pending -= 1

    def admit(self, client: str) -> None:
        with self.lock:
            if sum(self.by_client.values()) >= self.total:
                raise StreamAbort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"server is at its limit of {self.total} sessions"
                )
            if self.by_client[client] >= self.per_client:
                raise StreamAbort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"client {client} already has {self.per_client} open sessions (the limit)",
                )
            self.by_client[client] += 1

    def release(self, client: str) -> None:
        with self.lock:
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]

    @property
    def active(self) -> int:
        with self.lock:
            return sum(self.by_client.values())


def client_of(context: grpc.aio.ServicerContext, clients: dict[str, str] | None = None) -> str:
    """Who the caller is, for the per-client cap: the name of its bearer token when named client
    tokens are configured (``encoder.clients_file``), else its host (``ipv4:127.0.0.1:5555`` ->
    ``127.0.0.1``) — every user behind one proxy then shares one host's cap."""
    if clients and (got := bearer_of(context.invocation_metadata())):
        for token, name in clients.items():
            if hmac.compare_digest(got.encode(), token.encode()):
                return f"client:{name}"
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0]
    return peer
