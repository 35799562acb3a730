"""Test helpers for the trainer's command line: the shared symbolic corpora and a trainer run as a
real process (``trainer/run.py``), as CI and users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(REPO / "trainer" / "run.py")]


def corpora() -> Path:
    for cand in (
        os.environ.get("SCOREID_CORPORA"),
        REPO.parent / "shared" / "corpora",
        Path("/work/shared/corpora"),
    ):
        if cand and (Path(cand) / "hummel-preludes").is_dir():
            return Path(cand)
    pytest.fail("the shared symbolic corpora are missing (../shared/corpora or $SCOREID_CORPORA)")


def run_trainer(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*RUN, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc
