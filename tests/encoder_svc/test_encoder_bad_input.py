"""Bad input on the Identify stream (RANDOMLY INITIALISED test model): each mistake ends that
stream with a clear gRPC status while a concurrent good session is unaffected; a vanished client
leaves no session state after the TTL; session caps, bearer token and message size limits."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
from svc_fixtures import piece_audio, serve_encoder

from cli.client import requests, stream_audio
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid import contract as C

SR = 22050


def opts(**kw) -> pb.StreamRequest:
    o = {"sample_rate": SR, "encoding": pb.PCM_FLOAT32, **kw}
    return pb.StreamRequest(options=pb.SessionOptions(**o))


def audio(data: bytes) -> pb.StreamRequest:
    return pb.StreamRequest(audio=pb.AudioChunk(data=data))


GOOD = np.zeros(SR // 10, "<f4").tobytes()

CASES = {
    "empty stream": ([], "first message must be SessionOptions"),
    "audio before options": ([audio(GOOD)], "first message must be SessionOptions"),
    "unspecified encoding": ([opts(encoding=pb.ENCODING_UNSPECIFIED)], "unsupported encoding"),
    "unsupported sample rate": ([opts(sample_rate=1000)], "unsupported sample rate"),
    "bad hop": ([opts(hop_seconds=-1.0)], "hop_seconds"),
    "nan samples": ([opts(), audio(GOOD), audio(np.array([0.1, np.nan], "<f4").tobytes())], "NaN"),
    "inf samples": ([opts(), audio(np.array([np.inf] * 10, "<f4").tobytes())], "infinite"),
    # 3e38 is finite but overflowed the spectrogram to NaN and failed every session of its batch
    "huge samples": ([opts(), audio(GOOD), audio(np.full(SR // 10, 3e38, "<f4").tobytes())], "within +-64"),
    "zero-byte chunk": ([opts(), audio(GOOD), audio(b"")], "empty audio chunk (0 bytes)"),
    "ragged chunk": ([opts(), audio(b"\x00" * 7)], "not a whole number"),
    "oversized chunk": ([opts(), audio(np.zeros(SR * 3, "<f4").tobytes())], "longer than 2 s"),
    "options twice": ([opts(), audio(GOOD), opts()], "only once"),
    "empty request": ([opts(), pb.StreamRequest()], "neither options nor audio"),
    "unknown library": ([opts(library="nope"), audio(np.zeros(SR, "<f4").tobytes())], "unknown library"),
}


def test_bad_input_gets_a_clear_status_and_other_sessions_are_unaffected(make_stack, channel_to):
    stack = make_stack(max_chunk_seconds=2.0)
    good: list[pb.Identification] = []
    errors: list[BaseException] = []

    def run_good() -> None:
        try:
            good.extend(stream_audio(stack.address, piece_audio(0, 4.0), SR, speed=4.0))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=run_good)
    t.start()
    stub = pbg.IdentifyStub(channel_to(stack.address))
    for name, (msgs, text) in CASES.items():
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Stream(iter(msgs), timeout=20))
        want = grpc.StatusCode.NOT_FOUND if name == "unknown library" else grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.code() == want, (name, e.value.code(), e.value.details())
        assert text in e.value.details(), (name, e.value.details())
    t.join(60)
    assert not errors, errors
    assert good and good[-1].final and good[-1].top[0].piece == "alpha"
    assert stack.identify.gate.active == 0


def test_int16_encoding_gives_the_same_answer(make_stack):
    stack = make_stack()
    x = piece_audio(1, 4.0)
    x16 = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")

    def reqs():
        yield opts(encoding=pb.PCM_INT16)
        for s in range(0, len(x16), 2205):
            yield audio(x16[s : s + 2205].tobytes())

    with grpc.insecure_channel(stack.address) as ch:
        msgs = list(pbg.IdentifyStub(ch).Stream(reqs(), timeout=60))
    f32 = list(stream_audio(stack.address, x, SR, speed=0))
    assert msgs[-1].top[0].piece == f32[-1].top[0].piece == "beta"


def test_vanished_client_is_cleaned_up_and_its_state_expires(make_stack):
    stack = make_stack(ttl_s=1)
    stop = threading.Event()
    with grpc.insecure_channel(stack.address) as ch:
        call = pbg.IdentifyStub(ch).Stream(requests(piece_audio(2), SR, speed=4.0, stop=stop))
        got = []
        for m in call:
            got.append(m)
            if len(got) == 3:
                call.cancel()  # the client disappears mid-stream
                break
    other = list(stream_audio(stack.address, piece_audio(0, 3.0), SR, speed=0))
    assert other[-1].final
    deadline = time.monotonic() + 10
    while stack.identify.gate.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.identify.gate.active == 0
    time.sleep(1.5)  # the session TTL
    assert stack.redis.client().dbsize() == 0


def test_per_client_session_cap(make_stack):
    stack = make_stack(max_sessions_per_client=1)
    stop = threading.Event()
    with grpc.insecure_channel(stack.address) as ch:
        first = pbg.IdentifyStub(ch).Stream(requests(piece_audio(0), SR, speed=1.0, stop=stop))
        assert next(first).seq == 0
        with pytest.raises(grpc.RpcError) as e:
            list(stream_audio(stack.address, piece_audio(1, 1.0), SR, speed=0))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in e.value.details()
        stop.set()
        first.cancel()


def test_max_session_duration(make_stack):
    stack = make_stack(max_session_s=0.5)
    with pytest.raises(grpc.RpcError) as e:
        list(stream_audio(stack.address, piece_audio(0, 3.0), SR, speed=2.0))
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "maximum duration" in e.value.details()


def test_bearer_token_and_max_message_size(make_stack, random_encoder):
    stack = make_stack()
    server, addr = serve_encoder(stack.identify, random_encoder, token="s3cret", max_message_bytes=64 * 1024)
    try:
        x = piece_audio(0, 1.0)
        with pytest.raises(grpc.RpcError) as e:
            list(stream_audio(addr, x, SR, speed=0))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            list(stream_audio(addr, x, SR, speed=0, token="wrong"))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert list(stream_audio(addr, x, SR, speed=0, token="s3cret"))[-1].final
        with pytest.raises(grpc.RpcError) as e:  # one 1 s chunk of float32 = 88 kB > 64 kB
            list(stream_audio(addr, x, SR, speed=0, token="s3cret", chunk_s=1.0))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(None)
    assert C.SAMPLE_RATE == SR


def test_tls_on_the_client_facing_port(make_stack, random_encoder, tmp_path):
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    assert openssl, "openssl is part of the base system"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    stack = make_stack()
    server, addr = serve_encoder(stack.identify, random_encoder, tls_cert=str(cert), tls_key=str(key))
    try:
        x = piece_audio(2, 1.0)
        assert list(stream_audio(addr, x, SR, speed=0, tls_ca=cert))[-1].final
        with pytest.raises(grpc.RpcError) as e:  # plaintext against a TLS port
            list(stream_audio(addr, x, SR, speed=0, timeout=5))
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        server.stop(None)


def test_a_library_embedded_with_another_model_is_refused(make_stack, random_library):
    random_library.model_sha256 = "0" * 64  # as recorded by a library built with another model
    try:
        stack = make_stack()
        with pytest.raises(grpc.RpcError) as e:
            list(stream_audio(stack.address, piece_audio(0, 1.0), SR, speed=0))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "another model" in e.value.details()
    finally:
        random_library.model_sha256 = ""


class NoiseGivesNaN:
    """The random test encoder, except that a window of broadband noise (energy in the top 20 bins,
    which the test pieces' harmonic tones do not reach) gets NaN features: a SIMULATED numerical
    fault (bounded input no longer produces one) to check that a bad window in a shared batch ends
    only its own session."""

    def __init__(self, encoder):
        self.inner, self.contract = encoder, encoder.contract

    def embed_audio(self, x):
        emb = np.array(self.inner.embed_audio(x))
        emb[np.asarray(x)[:, 0, -20:, :].mean(axis=(1, 2)) > 0.1] = np.nan
        return emb


def test_a_bad_window_in_a_shared_batch_ends_only_its_session(make_stack, random_encoder, channel_to):
    stack = make_stack(encoder=NoiseGivesNaN(random_encoder), max_wait_ms=50.0)
    results: dict[int, object] = {}

    def run(i: int, x: np.ndarray) -> None:
        try:
            results[i] = list(stream_audio(stack.address, x, SR, speed=2.0))
        except grpc.RpcError as e:
            results[i] = e

    loud = (np.random.default_rng(0).uniform(-60, 60, SR * 4)).astype(np.float32)  # within +-64: accepted
    threads = [threading.Thread(target=run, args=(i, piece_audio(i % 3, 4.0))) for i in range(4)]
    threads.append(threading.Thread(target=run, args=(9, loud)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bad = results[9]
    assert isinstance(bad, grpc.RpcError) and bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "non-finite features" in bad.details()
    for i in range(4):
        msgs = results[i]
        assert (
            isinstance(msgs, list)
            and msgs[-1].final
            and msgs[-1].top[0].piece == ("alpha", "beta", "gamma")[i % 3]
        )


async def _refusal_seen_by_an_aio_client(
    address: str, token: str, first: pb.StreamRequest
) -> grpc.StatusCode:
    """One ``grpc.aio`` stream on its own channel as the page's server opens it (web/stack_session):
    ``first`` written at once, then the stack's admission (its initial metadata) awaited before any
    audio; the call's status if it was refused (``OK`` if admitted)."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = pbg.IdentifyStub(ch).Stream(metadata=(("authorization", f"Bearer {token}"),))
        try:
            await call.write(first)
            await asyncio.wait_for(call.initial_metadata(), timeout=10)
            if not call.done():
                call.cancel()
                return grpc.StatusCode.OK
            return await call.code()
        except grpc.aio.AioRpcError as e:
            return e.code()


def test_an_aio_client_is_told_why_it_is_refused_never_internal(make_stack, random_encoder):
    """grpc/grpc#36066: a ``grpc.aio`` write that races the server's end of the call was reported
    as INTERNAL ("Internal error from Core") in place of the refusal — a few % of wrong-token
    streams, on a fresh channel each. A refused token's stream is now ended after its first
    message, and an admitted session gets initial metadata first, so a client that waits for it
    is told UNAUTHENTICATED / NOT_FOUND every time, and an admitted one is admitted."""
    stack = make_stack()
    server, addr = serve_encoder(stack.identify, random_encoder, token="s3cret")

    async def run() -> dict[tuple[str, str], int]:
        seen: dict[tuple[str, str], int] = {}
        for i in range(120):
            case, token, first = (
                ("wrong token", "wrong-token", opts())
                if i % 3
                else (
                    ("unknown library", "s3cret", opts(library="nope"))
                    if i % 2
                    else ("good", "s3cret", opts())
                )
            )
            code = await _refusal_seen_by_an_aio_client(addr, token, first)
            seen[case, code.name] = seen.get((case, code.name), 0) + 1
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        server.stop(None)
    assert seen == {
        ("wrong token", "UNAUTHENTICATED"): 80,
        ("unknown library", "NOT_FOUND"): 20,
        ("good", "OK"): 20,
    }, seen
