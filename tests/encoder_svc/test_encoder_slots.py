"""Slots cannot be held for free (a finding of the security review), on a real stack (RANDOMLY INITIALISED test
model): a stream must send its options within a few seconds and then audio at least every
``idle_timeout_s``; streams still waiting for their options are capped, so the server's
concurrent-RPC budget keeps room for health checks; named client tokens give each client its own
session cap whatever its address; a token in clear text off loopback is refused at start."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from svc_fixtures import piece_audio, serve_encoder
from svc_helpers import wait_for

from cli.client import stream_audio
from ops.config import client_tokens
from ops.grpc_server import check_transport, keepalive_options
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid.errors import UserError

SR = 22050
CHUNK = np.zeros(SR // 10, "<f4").tobytes()


def held_stream(address: str, first: list[pb.StreamRequest], release: threading.Event, token: str = ""):
    """A stream that sends ``first`` and then nothing until ``release`` is set; returns the call."""

    def gen():
        yield from first
        release.wait()

    ch = grpc.insecure_channel(address)
    md = [("authorization", f"Bearer {token}")] if token else None
    return ch, pbg.IdentifyStub(ch).Stream(gen(), metadata=md)


def ended_with(call, within_s: float) -> grpc.RpcError:
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        for _ in call:
            pass
    assert time.monotonic() - t0 < within_s
    return e.value


def options() -> pb.StreamRequest:
    return pb.StreamRequest(options=pb.SessionOptions(sample_rate=SR, encoding=pb.PCM_FLOAT32))


def test_a_stream_that_never_sends_options_is_ended(make_stack):
    stack = make_stack(options_timeout_s=1.0)
    release = threading.Event()
    ch, call = held_stream(stack.address, [], release)
    try:
        err = ended_with(call, within_s=5.0)
        assert err.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
        wait_for(lambda: not stack.identify.gate.pending, timeout=5)
        assert stack.identify.gate.pending == 0 and stack.identify.watch.count == 0
    finally:
        release.set()
        ch.close()


def test_a_session_that_stops_sending_audio_is_ended_and_its_slot_freed(make_stack):
    stack = make_stack(idle_timeout_s=1.0, max_sessions_per_client=1)
    release = threading.Event()
    ch, call = held_stream(
        stack.address, [options(), pb.StreamRequest(audio=pb.AudioChunk(data=CHUNK))], release
    )
    try:
        err = ended_with(call, within_s=6.0)
        assert err.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
        wait_for(lambda: not stack.identify.gate.active, timeout=5)
        assert stack.identify.gate.active == 0
        # the one slot of this client is free again: a new session is served
        assert list(stream_audio(stack.address, piece_audio(0, 2.0), SR, speed=0))[-1].final
    finally:
        release.set()
        ch.close()


def test_a_session_sending_audio_is_not_idle(make_stack):
    stack = make_stack(idle_timeout_s=1.0)
    ups = list(stream_audio(stack.address, piece_audio(1, 3.0), SR, speed=1.0))  # 3 s in real time
    assert ups[-1].final and len(ups) >= 5


def test_streams_waiting_for_options_are_capped_and_health_stays_answered(make_stack, random_encoder):
    stack = make_stack(max_pending_streams=4, options_timeout_s=3.0)
    # the server as encoder_svc builds it: RPC budget = sessions + pending + a reserve of 2
    rpcs = stack.identify.s.max_sessions + 4 + 2
    server, addr = serve_encoder(stack.identify, random_encoder, workers=rpcs, maximum_concurrent_rpcs=rpcs)
    release = threading.Event()
    held = [held_stream(addr, [], release) for _ in range(4)]
    try:
        time.sleep(0.5)
        assert stack.identify.gate.pending == 4
        ch, extra = held_stream(addr, [], release)
        err = ended_with(extra, within_s=2.0)  # refused at once, not held
        assert (
            err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "waiting for their options" in err.details()
        )
        ch.close()
        with grpc.insecure_channel(addr) as hc:
            status = health_pb2_grpc.HealthStub(hc).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        for _ch, call in held:  # the options deadline ends the hostile ones ...
            assert ended_with(call, within_s=6.0).code() in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            )
        # ... and honest clients are served again
        assert list(stream_audio(addr, piece_audio(0, 2.0), SR, speed=0))[-1].final
    finally:
        release.set()
        for ch, _call in held:
            ch.close()
        server.stop(None)


def test_named_clients_have_their_own_session_cap_from_one_address(make_stack, random_encoder, tmp_path):
    f = tmp_path / "clients.yaml"
    f.write_text("alice: alice-token-0123456789\nbob: bob-token-0123456789ab\n")
    f.chmod(0o600)
    clients = client_tokens({"token": "", "clients_file": str(f)})
    assert clients == {"alice-token-0123456789": "alice", "bob-token-0123456789ab": "bob"}
    stack = make_stack(max_sessions_per_client=1, clients=clients)
    server, addr = serve_encoder(stack.identify, random_encoder, token=list(clients))
    release = threading.Event()
    ch, alice = held_stream(
        addr,
        [options(), pb.StreamRequest(audio=pb.AudioChunk(data=CHUNK))],
        release,
        token="alice-token-0123456789",
    )
    try:
        wait_for(lambda: stack.identify.gate.active >= 1, timeout=5)
        # bob, from the same address, still gets his session; alice's second one is refused
        assert list(stream_audio(addr, piece_audio(0, 1.0), SR, speed=0, token="bob-token-0123456789ab"))[
            -1
        ].final
        with pytest.raises(grpc.RpcError) as e:
            list(stream_audio(addr, piece_audio(0, 1.0), SR, speed=0, token="alice-token-0123456789"))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "client:alice" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            list(stream_audio(addr, piece_audio(0, 1.0), SR, speed=0, token="mallory"))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        release.set()
        alice.cancel()
        ch.close()
        server.stop(None)


def test_a_clients_file_must_be_private_and_well_formed(tmp_path):
    f = tmp_path / "clients.yaml"
    f.write_text("alice: alice-token-0123456789\n")
    f.chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        client_tokens({"clients_file": str(f)})
    f.chmod(0o600)
    for bad in (
        "alice: short\n",
        "'a b': alice-token-0123456789\n",
        "a: same-token-0123456789\nb: same-token-0123456789\n",
    ):
        f.write_text(bad)
        with pytest.raises(UserError):
            client_tokens({"clients_file": str(f)})


def test_a_token_in_clear_text_off_loopback_is_refused_at_start():
    check_transport(
        "encoder", "127.0.0.1", credential=True, tls=False, allow_insecure=False
    )  # loopback: fine
    check_transport("encoder", "0.0.0.0", credential=True, tls=True, allow_insecure=False)  # TLS: fine
    check_transport(
        "encoder", "0.0.0.0", credential=False, tls=False, allow_insecure=False
    )  # no token to leak
    with pytest.raises(UserError, match="clear text"):
        check_transport("encoder", "0.0.0.0", credential=True, tls=False, allow_insecure=False)
    check_transport("index", "10.0.0.5", credential=True, tls=False, allow_insecure=True)  # said explicitly
    assert dict(keepalive_options(20))["grpc.keepalive_time_ms"] == 20000


@pytest.mark.parametrize("service", ["encoder_svc", "index_svc", "aggregator_svc"])
def test_each_service_refuses_to_start_with_a_clear_text_token_off_loopback(service, tmp_path):
    import subprocess
    import sys

    tok = tmp_path / "internal.token"
    tok.write_text("internal-token-0123456789")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"host: 0.0.0.0\ninternal: {{token_file: {tok}}}\nencoder: {{token: client-token-0123456789}}\n"
        f"index: {{libraries: {{x: {tmp_path}}}}}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", service, "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "clear text" in r.stderr, r.stderr
