"""``scoreid up``: start the streaming stack locally and print the client address (host:port).

``--web`` also serves the page-turner beside it (``scoreid web --stack``, :mod:`ops.stack`), on
``--web-host`` (loopback unless told otherwise) and ``--web-port``; its URL is in the JSON line on
stderr, and ``scoreid down`` stops it with the rest.
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "up"
HELP = "start redis-server and the index, aggregator and encoder services; print the client host:port"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML configuration (see deploy/scoreid.yaml); env SCOREID__SECTION__KEY overrides",
    )
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each service to be healthy"
    )
    p.add_argument(
        "--web", action="store_true", help="also serve the page-turner (scoreid web) beside the stack"
    )
    p.add_argument(
        "--web-host",
        default=None,
        help="with --web: address the page listens on (default 127.0.0.1: this machine only)",
    )
    p.add_argument(
        "--web-port", type=int, default=None, help="with --web: its port (default 8000; 0: a free one)"
    )


def run(args: argparse.Namespace) -> int:
    from ops.config import load_config
    from ops.stack import start_stack
    from scoreid.errors import UserError

    if not args.web and (args.web_host, args.web_port) != (None, None):
        raise UserError("--web-host and --web-port go with --web")
    host, port = args.web_host or "127.0.0.1", 8000 if args.web_port is None else args.web_port
    if not 0 <= port <= 65535:
        raise UserError(f"--web-port must be 0..65535, got {port}")
    record = start_stack(
        load_config(args.config), timeout=args.timeout, web=(host, port) if args.web else None
    )
    extra = {"web": record["web"]} if record["web"] else {}
    print(
        json.dumps({"metrics": record["metrics"], "logs": record["state_dir"] + "/logs", **extra}),
        file=sys.stderr,
    )
    print(record["address"])
    return 0
