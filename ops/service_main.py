"""The start-up every service shares: ``python -m <service> [--config FILE]``.

:func:`run_service` parses ``--config``, sets up JSON logging, loads the configuration and hands it
to the service's ``build`` function, which checks its settings and credentials and returns a
:class:`Started` (the built gRPC server, its port, its metrics port, what to log). A start-up error
(``UserError`` or one of the service's own error types) is one line on stderr and exit code 2;
otherwise the metrics endpoint is served, the server started, ``listening`` logged, and the service
runs until SIGTERM/SIGINT, then ``on_stop`` runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ops.config import load_config
from ops.grpc_server import AsyncioServer, serve_until_signal
from ops.logs import log_event, setup_json_logging
from ops.metrics import serve_metrics
from scoreid.errors import UserError


@dataclass
class Started:
    """A built (not yet started) service."""

    server: AsyncioServer
    port: int
    metrics_port: int
    fields: dict[str, Any] = field(default_factory=dict)  #: extra fields of the ``listening`` log line
    on_stop: Callable[[], None] | None = None


def run_service(
    prog: str,
    doc: str | None,
    argv: list[str] | None,
    build: Callable[[dict], Started],
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run the service ``prog`` (``encoder_svc``, ...) built by ``build(config)``; see the module text."""
    ap = argparse.ArgumentParser(prog=prog, description=doc)
    ap.add_argument("--config", help="YAML configuration file")
    args = ap.parse_args(argv)
    setup_json_logging()
    service = prog.removesuffix("_svc")
    startup_errors: tuple[type[BaseException], ...] = (UserError, *errors)
    try:
        cfg = load_config(args.config)
        started = build(cfg)
    except startup_errors as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    serve_metrics(started.metrics_port, cfg["host"])
    started.server.start()
    log_event(
        logging.getLogger(f"scoreid.{service}"),
        "listening",
        service=service,
        address=f"{cfg['host']}:{started.port}",
        **started.fields,
    )
    serve_until_signal(started.server)
    if started.on_stop is not None:
        started.on_stop()
    return 0
