"""Hostile input on the client-facing Identify.Stream (RANDOMLY INITIALISED test model; hypothesis,
bounded): random session options, random bytes as audio, malformed protobuf frames, and many
sessions opened and dropped. Every stream must end with OK or a clear client-error status, the
server must keep serving a good session, and no session stays admitted. Two servers of one
servicer (each its own event loop) end every fuzzed stream alike: same status and message, same
updates."""

from __future__ import annotations

import grpc
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svc_fixtures import piece_audio, serve_encoder

from cli.client import stream_audio
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg

CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,  # unknown library / resume of an unknown session
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
METHOD = "/scoreid.v1.Identify/Stream"

options = st.builds(
    pb.SessionOptions,
    sample_rate=st.one_of(
        st.sampled_from([0, 7999, 8000, 16000, 22050, 44100, 192000, 192001]), st.integers(0, 2**32 - 1)
    ),
    encoding=st.integers(0, 3),
    library=st.sampled_from(["", "", "nope", "\x00", "x" * 300]),
    hop_seconds=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.05, 0.5, 10.0])
    ),
    top_k=st.one_of(st.integers(0, 60), st.integers(0, 2**32 - 1)),
    resume_session=st.sampled_from(["", "", "no-such-session", "\u2603" * 40]),
)
chunk = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=600).map(
        lambda xs: np.array(xs, "<f4").tobytes()
    ),
)
message = st.one_of(
    chunk.map(lambda b: pb.StreamRequest(audio=pb.AudioChunk(data=b))),
    options.map(lambda o: pb.StreamRequest(options=o)),
    st.just(pb.StreamRequest()),
)
stream = st.tuples(
    st.one_of(options.map(lambda o: pb.StreamRequest(options=o)), message), st.lists(message, max_size=8)
).map(lambda t: [t[0], *t[1]])
#: a session that starts well: valid options, then music (0.25 s pieces of a test piece, float32 at
#: 22.05 kHz) mixed with hostile messages
MUSIC = piece_audio(2, 3.0)
session = st.tuples(
    st.builds(
        pb.SessionOptions,
        sample_rate=st.just(22050),
        encoding=st.just(pb.PCM_FLOAT32),
        hop_seconds=st.sampled_from([0.0, 0.05, 0.5]),
        top_k=st.integers(0, 10),
    ),
    st.lists(
        st.one_of(
            st.integers(0, 11).map(
                lambda i: pb.StreamRequest(
                    audio=pb.AudioChunk(data=MUSIC[i * 5512 : (i + 1) * 5512].tobytes())
                )
            ),
            message,
        ),
        max_size=12,
    ),
).map(lambda t: [pb.StreamRequest(options=t[0]), *t[1]])


def outcome(call_messages: list, address: str, raw: bool = False) -> tuple:
    """How a stream ends as its client sees it: status, message, and each update's seq, final flag,
    times and ranking (``raw``: ``call_messages`` are frames of bytes)."""
    with grpc.insecure_channel(address) as ch:
        call = (
            ch.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
            if raw
            else pbg.IdentifyStub(ch).Stream
        )
        got: list = []
        try:
            for m in call(iter(call_messages), timeout=30):
                got.append(
                    m
                    if raw
                    else (
                        m.seq,
                        m.final,
                        m.seconds,
                        m.t_seconds,
                        m.identity,
                        [(t.piece, round(t.votes, 6)) for t in m.top],
                    )
                )
        except grpc.RpcError as e:
            return e.code(), e.details(), got
    return grpc.StatusCode.OK, "", got


def test_two_servers_end_every_fuzzed_stream_alike(make_stack, random_encoder):
    stack = make_stack(max_chunk_seconds=1.0, ttl_s=5)
    server, aio_address = serve_encoder(stack.identify, random_encoder, workers=16)  # a second loop
    try:

        @settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(st.one_of(stream, session))
        def one(msgs: list[pb.StreamRequest]) -> None:
            assert outcome(msgs, stack.address) == outcome(msgs, aio_address), msgs[:2]

        @settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=4))
        def frames(raw: list[bytes]) -> None:
            assert outcome(raw, stack.address, raw=True) == outcome(raw, aio_address, raw=True), raw

        one()
        frames()
        good = [pb.StreamRequest(options=pb.SessionOptions(sample_rate=22050, encoding=pb.PCM_FLOAT32))]
        x = piece_audio(1, 3.0)
        good += [
            pb.StreamRequest(audio=pb.AudioChunk(data=x[s : s + 2205].tobytes()))
            for s in range(0, len(x), 2205)
        ]
        threaded, asyncio = outcome(good, stack.address), outcome(good, aio_address)
        assert (
            threaded == asyncio and threaded[0] == grpc.StatusCode.OK and threaded[2][-1][-1][0][0] == "beta"
        )
    finally:
        server.stop(None).wait(10)
    assert stack.identify.gate.active == 0


def end_status(call_messages: list[pb.StreamRequest], address: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as ch:
        try:
            list(pbg.IdentifyStub(ch).Stream(iter(call_messages), timeout=30))
        except grpc.RpcError as e:
            assert e.details(), e.code()  # a message, never an empty status
            return e.code()
    return grpc.StatusCode.OK


def test_fuzzed_streams_get_clear_statuses_and_the_server_survives(make_stack):
    stack = make_stack(max_chunk_seconds=1.0, ttl_s=5)

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(stream)
    def one(msgs: list[pb.StreamRequest]) -> None:
        code = end_status(msgs, stack.address)
        assert code == grpc.StatusCode.OK or code in CLIENT_ERRORS, (code, msgs[:2])

    one()
    good = list(stream_audio(stack.address, piece_audio(0, 3.0), 22050, speed=0))
    assert good[-1].final and good[-1].top[0].piece == "alpha"
    assert stack.identify.gate.active == 0


def test_malformed_protobuf_frames_are_refused_cleanly(make_stack):
    stack = make_stack()

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=4))
    def one(frames: list[bytes]) -> None:
        with grpc.insecure_channel(stack.address) as ch:
            call = ch.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
            try:
                list(call(iter(frames), timeout=30))
            except grpc.RpcError as e:
                # bytes that do not parse are refused by gRPC itself (INTERNAL, "deserializ..."); bytes
                # that happen to parse are ordinary bad input
                assert e.code() in CLIENT_ERRORS | {grpc.StatusCode.INTERNAL}, (e.code(), e.details())
                assert e.details()

    one()
    good = list(stream_audio(stack.address, piece_audio(1, 3.0), 22050, speed=0))
    assert good[-1].top[0].piece == "beta"
    assert stack.identify.gate.active == 0


def test_many_sessions_opened_and_dropped(make_stack):
    stack = make_stack(max_sessions_per_client=10_000, ttl_s=1)
    first = pb.StreamRequest(options=pb.SessionOptions(sample_rate=22050, encoding=pb.PCM_FLOAT32))
    data = pb.StreamRequest(audio=pb.AudioChunk(data=np.zeros(2205, "<f4").tobytes()))
    with grpc.insecure_channel(stack.address) as ch:
        stub = pbg.IdentifyStub(ch)
        for i in range(300):
            call = stub.Stream(iter([first, data] if i % 2 else [first]), timeout=30)
            if i % 3 == 0:
                call.cancel()  # dropped at once
            else:
                list(call)
    good = list(stream_audio(stack.address, piece_audio(2, 3.0), 22050, speed=0))
    assert good[-1].top[0].piece == "gamma"
    import time

    deadline = time.monotonic() + 10
    while stack.identify.gate.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.identify.gate.active == 0
