"""``scoreid demo``: without a model it says so and shows no identity; with a model (here a randomly
initialised one exported in the test, so the identity itself is meaningless) it builds the cached
library, streams the held-out performance, prints the running identity and writes the plot."""

from __future__ import annotations

import subprocess
import sys


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def assert_clean_output(res: subprocess.CompletedProcess) -> None:
    """A log reader's view: no line twice, no progress bars (not a terminal), no library INFO chatter."""
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    dup = sorted({ln for ln in lines if lines.count(ln) > 1})
    assert not dup, f"printed twice: {dup}"
    assert "\r" not in res.stderr and "it/s" not in res.stderr and "piece/s" not in res.stderr, res.stderr
    assert not [ln for ln in lines if " INFO " in ln], res.stderr


def test_demo_without_model_says_so(tmp_path):
    res = cli("demo", "--model", tmp_path / "none", "--seconds", 4, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "no trained model" in res.stdout and "final identity" not in res.stdout
    assert (tmp_path / "out" / "demo-spectrogram.png").exists()


def test_demo_with_model_streams_and_plots(tmp_path, random_model):
    args = (
        "demo",
        "--model",
        random_model,
        "--pieces",
        2,
        "--seconds",
        6,
        "--cache",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
        "--piece",
        "schoenberg/opus19/movement2",
    )
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "t=   2.0s" in res.stdout and "final identity" in res.stdout
    assert (tmp_path / "out" / "demo-identify.png").exists()
    assert_clean_output(res)
    again = cli(*args)  # cached: nothing engraved or embedded again
    assert again.returncode == 0 and "engraving" not in again.stdout


def test_demo_through_services(tmp_path, random_model):
    """``demo --services``: the same performance through a real stack (redis-server + the three
    services on free loopback ports), the same status lines and plot, and the stack stopped after."""
    args = (
        "demo",
        "--services",
        "--speed",
        0,
        "--model",
        random_model,
        "--pieces",
        2,
        "--seconds",
        6,
        "--cache",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
        "--piece",
        "schoenberg/opus19/movement2",
    )
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "stack up at 127.0.0.1:" in res.stdout and "services stopped" in res.stdout
    assert "t=   2.0s" in res.stdout and "final identity" in res.stdout
    assert (tmp_path / "out" / "demo-identify.png").exists()
    assert_clean_output(res)
    ps = subprocess.run(["pgrep", "-f", "encoder_svc --config .*scoreid-demo-stack"], capture_output=True)
    assert ps.returncode == 1, "a service of the demo stack is still running"


def test_demo_services_without_model_is_a_clear_error(tmp_path):
    res = cli("demo", "--services", "--model", tmp_path / "none", "--out", tmp_path / "out")
    assert res.returncode == 2 and "needs a trained model" in res.stderr and "Traceback" not in res.stderr
