"""Plumbing shared by the streaming services: configuration, metrics, gRPC servers, log lines.

The services themselves live in ``encoder_svc``, ``index_svc`` and ``aggregator_svc``; this
package holds only what they share (and what ``scoreid up`` needs), never service logic.
"""
