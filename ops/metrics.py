"""Prometheus metrics shared by the services (one registry per process, one /metrics port each).

Stage latencies go into one histogram labelled by ``service`` and ``stage`` (resample,
spectrogram, queue_wait, encode, search, vote, redis, total) so one Grafana panel shows where
the time of an update goes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

STAGE_SECONDS = Histogram(
    "scoreid_stage_seconds", "Latency of one processing stage", ["service", "stage"], buckets=LATENCY_BUCKETS
)
RPC_SECONDS = Histogram(
    "scoreid_rpc_seconds",
    "Latency of one unary RPC (server side)",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter(
    "scoreid_errors_total", "Errors returned to callers, by gRPC status code", ["service", "code"]
)
ACTIVE_SESSIONS = Gauge("scoreid_active_sessions", "Client streams currently open", ["service"])
SESSIONS = Counter("scoreid_sessions_total", "Client streams opened", ["service"])
UPDATES = Counter("scoreid_updates_total", "Identification messages sent", ["service"])
BATCH_SIZE = Histogram(
    "scoreid_batch_size", "Windows per encoder batch", ["service"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
QUEUE_DEPTH = Gauge("scoreid_queue_depth", "Windows waiting for the encoder", ["service"])
REDIS_SECONDS = Histogram(
    "scoreid_redis_seconds", "Redis round-trip of one script call", ["service", "op"], buckets=LATENCY_BUCKETS
)
INDEX_VECTORS = Gauge("scoreid_index_vectors", "Vectors in a loaded library", ["service", "library"])


@contextmanager
def timed(service: str, stage: str, stamps: dict[str, float] | None = None) -> Iterator[None]:
    """Observe the block's duration in STAGE_SECONDS (and store it in ``stamps[stage]`` in ms)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        STAGE_SECONDS.labels(service, stage).observe(dt)
        if stamps is not None:
            stamps[stage] = stamps.get(stage, 0.0) + dt * 1000.0


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``host:port`` (port 0: none)."""
    if port:
        start_http_server(port, addr=host)
