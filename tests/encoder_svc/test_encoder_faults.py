"""Faults with a RANDOMLY INITIALISED test model: kill -9 of the aggregator mid-stream -> the client
gets UNAVAILABLE; a restarted aggregator continues the session from Redis (resume); a model whose
manifest contract differs is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from svc_fixtures import piece_audio
from svc_helpers import free_port

from cli.client import stream_audio
from encoder_svc.backend import load_served_model
from ops.grpc_server import wait_healthy
from scoreid.contract import ContractError

ROOT = Path(__file__).resolve().parents[2]
SR = 22050


def start_aggregator(redis_url: str, port: int, library_dir: Path) -> subprocess.Popen:
    env = dict(
        os.environ,
        SCOREID__REDIS__URL=redis_url,
        SCOREID__AGGREGATOR__PORT=str(port),
        SCOREID__AGGREGATOR__METRICS_PORT="0",
        SCOREID__INDEX__LIBRARIES=json.dumps({"test": str(library_dir)}),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator_svc"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_healthy(f"127.0.0.1:{port}", timeout=30)
    return proc


def test_kill_9_of_the_aggregator_mid_stream_then_resume_from_redis(
    make_stack, redis_server, random_library_dir
):
    port = free_port()
    proc = start_aggregator(redis_server.url, port, random_library_dir)
    try:
        stack = make_stack(aggregator_address=f"127.0.0.1:{port}", rpc_timeout_s=2.0)
        x = piece_audio(0)
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for m in stream_audio(stack.address, x, SR, speed=4.0):
                got.append(m)
                if len(got) == 4:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "aggregator unavailable" in e.value.details()
        sid = got[-1].session_id
        tally_before = {t.piece: t.votes for t in got[-1].top}
        proc = start_aggregator(redis_server.url, port, random_library_dir)
        token = got[0].resume_token
        assert token and all(not m.resume_token for m in got[1:])  # in the first message only
        for bad in (
            "",
            "0" * 64,
            stack.identify.resume_token("another-session"),
        ):  # the id alone is not enough
            with pytest.raises(grpc.RpcError) as e:
                list(stream_audio(stack.address, x[:SR], SR, speed=0, resume_session=sid, resume_token=bad))
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "resume_token" in e.value.details()
        resumed = list(
            stream_audio(stack.address, x[SR * 3 :], SR, speed=0, resume_session=sid, resume_token=token)
        )
        assert {m.session_id for m in resumed} == {sid}
        assert resumed[0].seconds > got[-1].seconds  # the session's audio time goes on from its last vote
        # the earlier votes are still there: alpha's tally at the first resumed update is at least its
        # pre-kill tally decayed over the gap (half-life 20 s) — votes were only added, none lost
        first = {t.piece: t.votes for t in resumed[0].top}
        gap = resumed[0].seconds - got[-1].seconds
        assert first["alpha"] >= tally_before["alpha"] * 2 ** (-gap / 20.0) - 1e-6
        assert resumed[-1].final
        # an unknown session cannot be resumed
        with pytest.raises(grpc.RpcError) as e:
            list(
                stream_audio(
                    stack.address,
                    x[:SR],
                    SR,
                    speed=0,
                    resume_session="nope",
                    resume_token=stack.identify.resume_token("nope"),
                )
            )
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        proc.kill()
        proc.wait()


def test_a_model_with_another_contract_is_refused(random_model_dir, tmp_path):
    bad = tmp_path / "bad-model"
    shutil.copytree(random_model_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["contract"]["fmax"] = 8000.0
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ContractError, match="fmax"):
        load_served_model(bad, "onnx")
    env = dict(
        os.environ,
        SCOREID__ENCODER__MODEL=str(bad),
        SCOREID__ENCODER__PORT=str(free_port()),
        SCOREID__ENCODER__METRICS_PORT="0",
    )
    r = subprocess.run(
        [sys.executable, "-m", "encoder_svc"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert "fmax" in r.stderr and "Traceback" not in r.stderr
