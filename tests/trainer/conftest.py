"""Fixtures of the trainer tests: a tiny aligned corpus built once per session (3 Hummel preludes,
one look, one performance each) by the real ``trainer/run.py corpus build``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_runs import corpora, run_trainer


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "data"
    src = corpora() / "hummel-preludes"
    run_trainer(
        "corpus",
        "build",
        "--source",
        str(src),
        "--limit",
        "3",
        "--looks",
        "1",
        "--performances",
        "1",
        "--out",
        str(out),
        "--no-progress",
    )
    splits = json.loads((out / "index.json").read_text())["splits"]
    assert splits["train"] and splits["valid"] and splits["test"]
    return out
