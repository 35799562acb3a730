"""``scoreid up``: start the streaming stack locally and print the client address (host:port)."""

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


def run(args: argparse.Namespace) -> int:
    from ops.config import load_config
    from ops.stack import start_stack

    record = start_stack(load_config(args.config), timeout=args.timeout)
    print(json.dumps({"metrics": record["metrics"], "logs": record["state_dir"] + "/logs"}), file=sys.stderr)
    print(record["address"])
    return 0
