"""Benchmark helper: the CPU of each thread of a running process over a window of time.

``python -m bench.thread_cpu PID [--seconds 30] [--per-second N] [--out FILE]``

Reads every thread's user + system time from ``/proc/PID/task/*/stat`` at the start and the end of
``--seconds`` and prints cores used per thread, grouped by name: the Python name of a thread when
``py-spy`` is on the PATH (``py-spy dump`` maps OS thread ids to ``threading`` names), else the
kernel's ``comm``. ``--per-second N`` (e.g. the updates/s of a ``bench/stack_streams.py`` run) adds
milliseconds of CPU per unit. Used for BENCHMARKS.md "Where the encoder's CPU goes, by thread"
(run it against the encoder service's PID while the load generator runs). Linux only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.report import cpu_name, write_result


def python_thread_names(pid: int) -> dict[str, str]:
    """OS thread id -> ``threading`` name, from ``py-spy dump`` (empty without py-spy)."""
    exe = shutil.which("py-spy")
    if exe is None:
        return {}
    out = subprocess.run([exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=60).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r'Thread (\d+) \(\w+\): "([^"]+)"', out)}


def thread_times(pid: int, names: dict[str, str]) -> dict[str, tuple[str, int]]:
    """OS thread id -> (name, user + system clock ticks)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[tid] = (names.get(tid, comm), int(fields[11]) + int(fields[12]))
    return out


def measure(pid: int, seconds: float) -> dict[str, float]:
    names = python_thread_names(pid)
    a = thread_times(pid, names)
    time.sleep(seconds)
    b = thread_times(pid, names)
    hz = os.sysconf("SC_CLK_TCK")
    cores: dict[str, float] = {}
    for tid, (name, ticks) in b.items():
        cores[name] = cores.get(name, 0.0) + (ticks - a.get(tid, (name, 0))[1]) / hz / seconds
    return cores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pid", type=int)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--per-second", type=float, default=None, help="units per second: adds ms of CPU per unit")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if not Path(f"/proc/{args.pid}/task").is_dir():
        raise SystemExit(f"thread_cpu: no process {args.pid}")
    cores = measure(args.pid, args.seconds)
    total = sum(cores.values())
    busiest = sorted(cores.items(), key=lambda nc: -nc[1])
    rows: list[dict[str, Any]] = [{"thread": n, "cores": round(c, 4)} for n, c in busiest if c > 0]
    if args.per_second:
        for r in rows:
            r["ms_per_unit"] = round(1000 * r["cores"] / args.per_second, 2)
    print(f"| thread | cores |{' ms per unit |' if args.per_second else ''}")
    print(f"|---|---:|{'---:|' if args.per_second else ''}")
    for r in rows + [{"thread": "**total**", "cores": round(total, 4)}]:
        per = f" {1000 * r['cores'] / args.per_second:.2f} |" if args.per_second else ""
        print(f"| {r['thread']} | {r['cores']:.3f} |{per}")
    if args.out:
        write_result(
            args.out,
            {
                "pid": args.pid,
                "seconds": args.seconds,
                "per_second": args.per_second,
                "total_cores": round(total, 4),
                "threads": rows,
                "cpu": cpu_name(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
