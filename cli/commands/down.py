"""``scoreid down``: stop the stack that ``scoreid up`` started (same config / state_dir)."""

from __future__ import annotations

import argparse

NAME = "down"
HELP = "stop the services and redis-server started by `scoreid up`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", metavar="FILE", help="the configuration given to `scoreid up` (for its state_dir)"
    )


def run(args: argparse.Namespace) -> int:
    from ops.config import load_config
    from ops.stack import stop_stack

    stopped = stop_stack(load_config(args.config)["state_dir"])
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0
