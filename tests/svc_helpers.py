"""Helpers for the service tests: the root conftest's real-server functions under a unique module
name (``from conftest import ...`` is ambiguous once several test folders have a conftest.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

_path = Path(__file__).resolve().parent / "conftest.py"
_name = "scoreid_tests_root_conftest"
if _name in sys.modules:
    _root = sys.modules[_name]
else:
    _spec = importlib.util.spec_from_file_location(_name, _path)
    assert _spec and _spec.loader
    _root = importlib.util.module_from_spec(_spec)
    sys.modules[_name] = _root
    _spec.loader.exec_module(_root)

free_port = _root.free_port
start_redis = _root.start_redis
stop_redis = _root.stop_redis
terminate = _root.terminate
wait_for = _root.wait_for

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    """``scoreid ARGS`` (``python -m cli``) run from the repository root; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
