"""Operations: configuration, gRPC server plumbing, metrics, log lines, the local stack
(``scoreid up``) and its supervisor.

The services themselves live in ``encoder_svc``, ``index_svc`` and ``aggregator_svc``; this
package holds only what they share (and what ``scoreid up`` needs), never service logic.
Imports the core (``scoreid``) only.
"""
