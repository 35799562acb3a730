"""The local stack's supervisor: restarts a crashed service or redis-server, as Kubernetes would.

``scoreid up`` starts it last (``python -m ops.supervisor --state STATE_DIR``, unless
``supervisor.enabled`` is false). Every ``interval_s`` it reads ``STATE_DIR/stack.json`` and
checks each process it lists; one that has died (killed, crashed, OOM) is started again with the
command line `scoreid up` recorded for it, ``restart_delay_s`` after it was seen dead, its output
appended to its log, and its new pid written back to ``stack.json``. The services need nothing
else to recover: their peers reconnect (gRPC channels retry), session state lives in Redis, and
Redis reloads its AOF. A process that dies ``max_restarts`` times within ``window_s`` is left
down (a crash loop; logged once). Every restart is a JSON line in ``STATE_DIR/logs/supervisor.log``.
``scoreid down`` stops the supervisor first, then the processes it supervises.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from ops.logs import log_event, setup_json_logging
from ops.stack import REPO, _alive, read_stack, write_stack

log = logging.getLogger("scoreid.supervisor")
NAME = "supervisor"


class Supervisor:
    def __init__(
        self,
        state: Path,
        interval_s: float = 0.5,
        restart_delay_s: float = 1.0,
        max_restarts: int = 5,
        window_s: float = 60.0,
    ):
        self.state = state
        self.interval_s, self.restart_delay_s = interval_s, restart_delay_s
        self.max_restarts, self.window_s = max_restarts, window_s
        self.children: dict[str, subprocess.Popen[bytes]] = {}  # the processes this supervisor started
        self.dead_since: dict[str, float] = {}
        self.restarts: dict[str, deque[float]] = {}
        self.given_up: set[str] = set()
        self.stop = threading.Event()

    def dead(self, p: dict[str, Any]) -> bool:
        child = self.children.get(p["name"])
        if child is not None and child.pid == p["pid"]:
            return child.poll() is not None  # also reaps it
        return not _alive(int(p["pid"]), p["marker"])

    def check(self) -> bool:
        """One pass; returns False once the stack is gone (``scoreid down``)."""
        record = read_stack(self.state)
        if record is None:
            return False
        changed = False
        now = time.monotonic()
        for p in record["processes"]:
            name = p["name"]
            if name == NAME or name in self.given_up or "cmd" not in p or not self.dead(p):
                self.dead_since.pop(name, None)
                continue
            first_seen = self.dead_since.setdefault(name, now)
            if now - first_seen < self.restart_delay_s:
                continue
            recent = self.restarts.setdefault(name, deque())
            while recent and now - recent[0] > self.window_s:
                recent.popleft()
            if len(recent) >= self.max_restarts:
                self.given_up.add(name)
                log_event(
                    log,
                    "crash loop: left down",
                    level=logging.ERROR,
                    service=name,
                    restarts=len(recent),
                    window_s=self.window_s,
                )
                continue
            with open(p.get("log") or os.devnull, "ab") as logf:  # the child keeps its own descriptor
                child = subprocess.Popen(
                    p["cmd"],
                    cwd=str(REPO),
                    env=os.environ.copy(),
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            old = p["pid"]
            self.children[name] = child
            recent.append(now)
            p["pid"] = child.pid
            p["restarts"] = int(p.get("restarts", 0)) + 1
            self.dead_since.pop(name, None)
            changed = True
            log_event(log, "restarted", service=name, old_pid=old, pid=child.pid, restarts=p["restarts"])
        if changed:
            write_stack(self.state, record)
        return True

    def run(self) -> None:
        log_event(log, "supervising", state=str(self.state), interval_s=self.interval_s)
        while not self.stop.is_set() and self.check():
            self.stop.wait(self.interval_s)
        log_event(log, "stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--restart-delay", type=float, default=1.0)
    ap.add_argument("--max-restarts", type=int, default=5)
    ap.add_argument("--window", type=float, default=60.0)
    args = ap.parse_args(argv)
    setup_json_logging()
    sup = Supervisor(args.state.resolve(), args.interval, args.restart_delay, args.max_restarts, args.window)
    signal.signal(signal.SIGTERM, lambda *_: sup.stop.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stop.set())
    sup.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
