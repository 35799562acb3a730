"""Fixtures for the encoder service tests (imported by the test modules): a RANDOMLY INITIALISED audio encoder (exported to ONNX
inside the test session, never shipped), a synthetic three-piece library embedded with that same
random model, and the whole stack on localhost (real redis-server, real gRPC servers).

The random model makes identification meaningful without a trained model: the library rows are
the random model's embeddings of the very windows the stream will produce, so the right piece
must win if every stage (decode, resample, spectrogram, windowing, batching, search, vote) works.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from aggregator_svc.server import AggregatorServicer
from aggregator_svc.server import register as register_aggregator
from aggregator_svc.store import RedisTallies
from encoder_svc.server import EmbedderServicer, EncoderSettings, IdentifyServicer
from encoder_svc.server import register as register_encoder
from index_svc.library import RowMeta, ServedLibrary
from index_svc.server import IndexServicer
from index_svc.server import register as register_index
from scoreid import contract as C
from scoreid.audio.spectrogram import spectrogram
from scoreid.sheet.strip import audio_to_network, audio_window

PIECES = ("alpha", "beta", "gamma")
SECONDS = 6.0


class RandomOnnxAudioEncoder:
    """A randomly initialised conv net exported to ONNX and run with ONNX Runtime (test only)."""

    def __init__(self, path: Path, seed: int = 0):
        import onnxruntime as ort

        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 5, stride=(4, 4)), torch.nn.ReLU(), torch.nn.Flatten(),
            torch.nn.LazyLinear(C.EMBED_DIM),
        )  # fmt: skip
        x = torch.zeros(2, 1, C.N_BINS, C.AUDIO_WINDOW_FRAMES)
        net(x)

        class Norm(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module):
                super().__init__()
                self.inner = inner

            def forward(self, s: torch.Tensor) -> torch.Tensor:
                return torch.nn.functional.normalize(self.inner(s), dim=1)

        torch.onnx.export(Norm(net).eval(), (x,), str(path), input_names=["spec"], output_names=["embedding"],
                          dynamic_axes={"spec": {0: "batch"}, "embedding": {0: "batch"}}, dynamo=False)  # fmt: skip
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.contract = C.DEFAULT

    def embed_audio(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or x.shape[1:] != (1, C.N_BINS, C.AUDIO_WINDOW_FRAMES):
            raise ValueError(f"audio input must have shape (batch, 1, 92, 84), got {x.shape}")
        return self.session.run(["embedding"], {"spec": x})[0]


def piece_audio(i: int, seconds: float = SECONDS, sr: int = C.SAMPLE_RATE) -> np.ndarray:
    """A deterministic 'piece': a random melody of decaying harmonic tones (seeded by piece index)."""
    rng = np.random.default_rng(100 + i)
    note_s = 0.25
    t = np.arange(int(note_s * sr)) / sr
    out = []
    for _ in range(int(seconds / note_s)):
        f = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        tone = sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3)) * np.exp(-6 * t)
        out.append(0.3 * tone)
    return np.concatenate(out).astype(np.float32)


def build_library(encoder: RandomOnnxAudioEncoder) -> ServedLibrary:
    vecs, metas = [], []
    for i, _ in enumerate(PIECES):
        spec = spectrogram(piece_audio(i))
        ends = np.arange(2, len(spec) + 1, 2)
        wins = np.stack([audio_window(spec, e - C.AUDIO_WINDOW_FRAMES / 2) for e in ends])
        vecs.append(encoder.embed_audio(audio_to_network(wins)))
        n = len(ends)
        metas.append(RowMeta(np.full(n, i, np.int32), np.ones(n, np.int32), (ends // 40).astype(np.int32),
                             ends.astype(np.float64) * 3, np.full(n, 100.0), np.full(n, 260.0)))  # fmt: skip
    meta = metas[0]
    for m in metas[1:]:
        meta = RowMeta.concat(meta, m)
    titles = {p: f"Piece {p.title()}" for p in PIECES}
    return ServedLibrary("test", np.concatenate(vecs), meta, list(PIECES), titles)


@pytest.fixture(scope="session")
def random_encoder(tmp_path_factory) -> RandomOnnxAudioEncoder:
    torch.set_num_threads(1)
    return RandomOnnxAudioEncoder(tmp_path_factory.mktemp("random-model") / "audio.onnx")


@pytest.fixture(scope="session")
def random_library(random_encoder) -> ServedLibrary:
    return build_library(random_encoder)


@dataclass
class Stack:
    address: str
    identify: IdentifyServicer
    redis: object
    index_address: str
    aggregator_address: str


@pytest.fixture
def make_stack(redis_server, grpc_server, random_encoder, random_library) -> Iterator:
    """Factory: ``make_stack(**EncoderSettings overrides, ttl_s=..., aggregator_address=...)``."""
    made: list[IdentifyServicer] = []

    def make(ttl_s: int = 60, aggregator_address: str | None = None, **settings) -> Stack:
        if aggregator_address is None:
            agg = grpc_server(
                register_aggregator(AggregatorServicer(RedisTallies(redis_server.client(), ttl_s=ttl_s)))
            )
            aggregator_address = agg.address
        idx = grpc_server(register_index(IndexServicer({"test": random_library})))
        ident = IdentifyServicer(random_encoder, idx.address, aggregator_address,
                                 EncoderSettings(**{"max_wait_ms": 2.0, "k": 5, **settings}))  # fmt: skip
        made.append(ident)
        enc = grpc_server(register_encoder(ident, EmbedderServicer(random_encoder, "random")), max_workers=16)
        return Stack(enc.address, ident, redis_server, idx.address, aggregator_address)

    yield make
    for m in made:
        m.close()


@pytest.fixture
def channel_to():
    chans: list[grpc.Channel] = []

    def open_(address: str) -> grpc.Channel:
        ch = grpc.insecure_channel(address)
        chans.append(ch)
        return ch

    yield open_
    for c in chans:
        c.close()
