"""Fixtures for the encoder service tests (imported by the test modules): a RANDOMLY INITIALISED
CrossModalNet exported with ``trainer.export`` inside the test session (never shipped) and loaded
with the service's backend loader, a synthetic three-piece library embedded with that same
random model, and the whole stack on localhost (real redis-server, real gRPC servers).

The encoder's client-facing server (``grpc.aio``, a coroutine per stream) is built by
:func:`serve_encoder` with ``build_server``, as ``encoder_svc`` builds it.

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

from aggregator_svc.libraries import Libraries
from aggregator_svc.server import AggregatorServicer
from aggregator_svc.server import register as register_aggregator
from aggregator_svc.store import EngineStates
from bench.libwriter import write_core_library
from encoder_svc.backend import load_served_model
from encoder_svc.server import EmbedderServicer, EncoderSettings, IdentifyServicer
from encoder_svc.server import register as register_encoder
from index_svc.library import ServedLibrary
from index_svc.server import IndexServicer
from index_svc.server import register as register_index
from ops.grpc_server import build_server
from scoreid import contract as C
from scoreid.audio.spectrogram import spectrogram
from scoreid.tensors import audio_to_network, audio_window

PIECES = ("alpha", "beta", "gamma")
SECONDS = 6.0


def export_random_model(out: Path, seed: int = 0) -> Path:
    """A RANDOMLY INITIALISED CrossModalNet exported like a trained one (test only, never shipped)."""
    from scoreid.models import CrossModalNet
    from trainer.export import export_model

    torch.manual_seed(seed)
    net = CrossModalNet().eval()
    with torch.no_grad():  # non-trivial CCA buffers, as after training
        a, s = (
            torch.rand(64, 1, C.N_BINS, C.AUDIO_WINDOW_FRAMES),
            torch.rand(64, 1, C.SHEET_NET_H, C.SHEET_NET_W),
        )
        net.cca.refit(net.pre_cca_audio(a), net.pre_cca_sheet(s))
    export_model(net, out, {"preset": "random-test-model", "seed": seed}, tensorrt=False, log=lambda m: None)
    return out


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


def write_library(encoder, out: Path, model_dir: Path | None = None) -> Path:
    """The three pieces as a core library directory (:func:`libwriter.write_core_library`): the rows
    are the encoder's embeddings of each piece's own audio windows every 2 frames, so the right piece
    and place must win."""
    vectors = {}
    for i, pid in enumerate(PIECES):
        spec = spectrogram(piece_audio(i))
        ends = np.arange(2, len(spec) + 1, 2)
        wins = np.stack([audio_window(spec, e - C.AUDIO_WINDOW_FRAMES / 2) for e in ends])
        vectors[pid] = encoder.embed_audio(audio_to_network(wins)).astype(np.float32)
    return write_core_library(out, vectors, encoder.contract, model_dir=str(model_dir or ""))


def build_library(encoder, out: Path) -> ServedLibrary:
    return ServedLibrary.open(write_library(encoder, out), "test")


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return export_random_model(tmp_path_factory.mktemp("random-model"))


@pytest.fixture(scope="session")
def random_encoder(random_model_dir):
    """The encoder service's backend loader on the random model (ONNX Runtime, CPU)."""
    return load_served_model(random_model_dir, "onnx")


@pytest.fixture(scope="session")
def random_library_dir(random_encoder, tmp_path_factory) -> Path:
    return write_library(random_encoder, tmp_path_factory.mktemp("svc-lib") / "lib")


@pytest.fixture
def random_library(random_library_dir) -> ServedLibrary:
    """The index's copy (fresh per test: tests may change it); the aggregator reads the directory."""
    return ServedLibrary.open(random_library_dir, "test")


def serve_encoder(identify: IdentifyServicer, encoder, **build) -> tuple[object, str]:
    """A started encoder server on a free loopback port (``build``: ``build_server``'s options);
    returns (server, address). The caller stops it (``server.stop(None)``)."""
    server, port = build_server(
        register_encoder(identify, EmbedderServicer(encoder, "random")),
        "127.0.0.1:0",
        service="encoder",
        **build,
    )
    server.start()
    return server, f"127.0.0.1:{port}"


@dataclass
class Stack:
    address: str
    identify: IdentifyServicer
    redis: object
    index_address: str
    aggregator_address: str


@pytest.fixture
def make_stack(redis_server, grpc_server, random_encoder, random_library, random_library_dir) -> Iterator:
    """Factory: ``make_stack(**EncoderSettings overrides, ttl_s=..., aggregator_address=...)``."""
    made: list[IdentifyServicer] = []
    servers: list = []

    def make(ttl_s: int = 60, aggregator_address: str | None = None, encoder=None, **settings) -> Stack:
        if aggregator_address is None:
            agg = grpc_server(
                register_aggregator(
                    AggregatorServicer(
                        EngineStates(redis_server.client(), ttl_s=ttl_s),
                        Libraries({"test": str(random_library_dir)}),
                    )
                )
            )
            aggregator_address = agg.address
        idx = grpc_server(register_index(IndexServicer({"test": random_library})))
        ident = IdentifyServicer(
            encoder or random_encoder,
            idx.address,
            aggregator_address,
            EncoderSettings(**{"max_wait_ms": 2.0, "k": 5, **settings}),
        )
        made.append(ident)
        server, address = serve_encoder(ident, random_encoder, workers=16)
        servers.append(server)
        return Stack(address, ident, redis_server, idx.address, aggregator_address)

    yield make
    for s in servers:
        s.stop(None).wait(10)
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
