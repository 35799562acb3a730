"""aggregator_svc: per-session vote tallies in Redis (atomic updates, decay, TTL) and the running
identity and score position. Imports the core and ``proto`` only; all session state lives in Redis."""
