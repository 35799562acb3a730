"""The local stack's supervisor: a killed service comes back by itself, a crash loop is left down,
and `scoreid down` leaves nothing running (real redis-server and services on loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf
import yaml
from scorefixtures import tones
from svc_helpers import wait_for
from test_stack_e2e import cli, stack_config

from cli.client import identify_files
from ops.grpc_server import wait_healthy
from ops.stack import _alive, read_stack
from ops.supervisor import Supervisor


def test_killed_services_and_redis_are_restarted_by_the_stack(tmp_path, sheets_dir, random_model):
    lib = tmp_path / "lib"
    assert cli("library", "build", sheets_dir, "--out", lib, "--model", random_model).returncode == 0
    cfg = stack_config(tmp_path, lib, random_model)
    up = cli("up", "--config", cfg)
    assert up.returncode == 0, up.stderr
    address = up.stdout.strip()
    conf = yaml.safe_load(cfg.read_text())
    state = Path(conf["state_dir"])
    wav = tmp_path / "rec.wav"
    sf.write(wav, tones(4.0, 22050, seed=3), 22050)
    try:
        rec = read_stack(state)
        assert rec is not None
        names = [p["name"] for p in rec["processes"]]
        assert names[-1] == "supervisor"
        for victim in ("aggregator", "index", "redis"):
            old = next(p for p in read_stack(state)["processes"] if p["name"] == victim)  # type: ignore[index]
            os.kill(old["pid"], signal.SIGKILL)

            def restarted(victim: str = victim, old: dict = old) -> bool:  # type: ignore[type-arg]
                now = next(p for p in read_stack(state)["processes"] if p["name"] == victim)  # type: ignore[index]
                return now["pid"] != old["pid"] and _alive(now["pid"], now["marker"])

            assert wait_for(restarted), f"{victim} was not restarted"
            if victim != "redis":
                wait_healthy(f"127.0.0.1:{conf[victim]['port']}", timeout=30)
        time.sleep(1.0)
        lines = [json.loads(x) for x in identify_files(address, [str(wav)], speed=0)]
        assert lines[-1]["final"] and lines[-1]["top"]
        log = (state / "logs" / "supervisor.log").read_text()
        assert log.count('"restarted"') == 3
    finally:
        down = cli("down", "--config", cfg)
    assert down.returncode == 0, down.stderr
    assert "supervisor" in down.stdout
    left = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a process of the stack is still running"


def test_a_crash_loop_is_left_down(tmp_path):
    crash = [sys.executable, "-c", "import sys, time; time.sleep(0.05); sys.exit(3)", "scoreid-test-crasher"]
    p = subprocess.Popen(crash)
    p.wait()
    record = {
        "processes": [
            {
                "name": "crasher",
                "pid": p.pid,
                "marker": "scoreid-test-crasher",
                "cmd": crash,
                "log": str(tmp_path / "crasher.log"),
            }
        ]
    }
    (tmp_path / "stack.json").write_text(json.dumps(record))
    sup = Supervisor(tmp_path, interval_s=0.0, restart_delay_s=0.0, max_restarts=3, window_s=60.0)
    pids = set()
    deadline = time.monotonic() + 30
    while "crasher" not in sup.given_up and time.monotonic() < deadline:
        assert sup.check()
        pids.add(json.loads((tmp_path / "stack.json").read_text())["processes"][0]["pid"])
        time.sleep(0.1)
    assert "crasher" in sup.given_up and len(pids - {p.pid}) == 3
    assert json.loads((tmp_path / "stack.json").read_text())["processes"][0]["restarts"] == 3
    (tmp_path / "stack.json").unlink()
    assert not sup.check()  # the stack is gone: the supervisor ends
    for child in sup.children.values():
        child.wait(5)
