"""Aggregator service: per-session decaying vote tallies kept only in Redis (replicas share them)."""
