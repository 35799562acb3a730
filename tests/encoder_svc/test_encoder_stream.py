"""Identify stream over real gRPC + real Redis with a RANDOMLY INITIALISED test model (see conftest):
updates every hop, the right piece, concurrent sessions, latency stamps, embed RPC, health."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from svc_fixtures import PIECES, SECONDS, piece_audio

from cli.client import identification_to_dict, stream_audio
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import from_tensor, to_tensor
from scoreid import contract as C
from scoreid.audio.io import resample


def test_random_model_three_concurrent_streams_each_get_every_hop_and_the_right_piece(make_stack):
    stack = make_stack()
    results: dict[int, list[pb.Identification]] = {}
    errors: list[BaseException] = []

    def run(i: int, sr: int) -> None:
        try:
            x = resample(piece_audio(i), C.SAMPLE_RATE, sr)
            results[i] = list(stream_audio(stack.address, x, sr, speed=0, hop_s=0.5, chunk_s=0.13))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, sr)) for i, sr in zip(range(3), (22050, 44100, 16000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i, msgs in results.items():
        n_windows = int(np.ceil(SECONDS * C.FPS / 10))  # one update per 0.5 s hop (10 frames)
        # + one final repeat when the last hop ended exactly at the end of the audio
        assert len(msgs) in (n_windows, n_windows + 1)
        assert [m.seq for m in msgs] == list(range(len(msgs)))
        assert [m.final for m in msgs] == [False] * (len(msgs) - 1) + [True]
        assert len({m.session_id for m in msgs}) == 1
        assert msgs[-1].seconds == pytest.approx(SECONDS, abs=0.01)
        assert msgs[-1].top[0].piece == PIECES[i] and msgs[-1].top[0].title == f"Piece {PIECES[i].title()}"
        assert msgs[-1].position.piece == PIECES[i]
        # the right answer early and stable: from 3 s of audio on (a random model, k = 5)
        assert all(m.top[0].piece == PIECES[i] for m in msgs if m.seconds >= 3.0)
        for key in ("resample", "spectrogram", "queue_wait", "encode", "search", "vote", "total"):
            assert key in msgs[0].latency_ms
        voting = [m.voting for m in msgs]  # the engine's count of voting windows, silent ones excluded
        assert voting == sorted(voting) and voting[-1] == sum(not m.silent for m in msgs[:n_windows]) > 0
        d = identification_to_dict(msgs[-1])
        assert d["final"] and d["top"][0]["piece"] == PIECES[i]
    # a finished session leaves nothing in Redis
    assert stack.redis.client().dbsize() == 0
    assert stack.identify.gate.active == 0


def test_windows_are_batched_across_sessions(make_stack):
    stack = make_stack(max_wait_ms=30.0)
    out: list[list[pb.Identification]] = [[], [], [], []]

    def run(i: int) -> None:
        out[i] = list(
            stream_audio(stack.address, piece_audio(i % 3, 3.0), C.SAMPLE_RATE, speed=0, chunk_s=1.0)
        )

    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    batches = [m.latency_ms["batch"] for msgs in out for m in msgs]
    assert len(batches) >= 4 * 6 and max(batches) > 1


def test_embed_batch_rpc_and_health(make_stack, channel_to, random_encoder):
    stack = make_stack()
    ch = channel_to(stack.address)
    x = np.random.default_rng(0).random((3, 1, C.N_BINS, C.AUDIO_WINDOW_FRAMES), np.float32)
    r = pbg.EmbedderStub(ch).EmbedBatch(pb.EmbedRequest(audio=to_tensor(x)))
    np.testing.assert_allclose(from_tensor(r.embeddings), random_encoder.embed_audio(x), atol=1e-6)
    with pytest.raises(grpc.RpcError) as e:
        pbg.EmbedderStub(ch).EmbedBatch(pb.EmbedRequest(audio=to_tensor(x[:, :, :50])))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "shape" in e.value.details()
    for svc in ("", "scoreid.v1.Identify", "scoreid.v1.Embedder"):
        st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=svc)).status
        assert st == health_pb2.HealthCheckResponse.SERVING


def _index_searches() -> float:
    """Index.Search calls served so far in this process (the test's index runs in it)."""
    from prometheus_client import REGISTRY

    n = REGISTRY.get_sample_value("scoreid_rpc_seconds_count", {"service": "index", "method": "Search"})
    return n or 0.0


@pytest.mark.parametrize("search", ["aggregator", "index"])
def test_a_window_is_searched_where_the_setting_says_with_the_same_answers(make_stack, search):
    """``encoder.search``: in the aggregator's vote call (no Index.Search at all: one RPC per batch)
    or by the index first; the stream's answers are the same either way (the parity test checks
    them hop by hop against ``scoreid identify`` with the trained model)."""
    stack = make_stack(search=search)
    before = _index_searches()
    msgs = list(stream_audio(stack.address, piece_audio(1, 4.0), C.SAMPLE_RATE, speed=0, chunk_s=0.5))
    searched = _index_searches() - before
    assert msgs[-1].top[0].piece == PIECES[1]
    assert (searched == 0) if search == "aggregator" else (searched >= sum(not m.silent for m in msgs) - 1)
