"""Shared by the benchmarks: the machine they ran on, and writing their JSON result."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model and the flags the int8 kernels and oneDNN/MKL depend on, e.g.
    ``Intel(R) Xeon(R) Processor (avx2, avx512f, avx512_vnni, avx_vnni), 2 cores``."""
    flags, name = "", platform.processor() or "cpu"
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name"))
        flags = next(ln.split(":", 1)[1] for ln in info if ln.startswith("flags"))
    except (OSError, StopIteration):
        pass
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f} " in f" {flags} "]
    return f"{name} ({', '.join(have) or 'no avx2'}), {os.cpu_count()} cores"


def write_result(path: Path, result: dict[str, Any]) -> None:
    """``result`` as indented JSON at ``path`` (folders created), and a line saying so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    print(f"wrote {path}")
