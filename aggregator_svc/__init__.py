"""Aggregator service: per-session decaying vote tallies kept only in Redis (replicas share them)."""

import ops.blas  # noqa: E402,F401 - one BLAS thread, before numpy loads
