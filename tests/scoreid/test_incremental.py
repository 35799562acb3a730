"""The incremental audio encoder (scoreid.models.split, trainer.export_incremental, scoreid.incremental):
the same embeddings as the whole-window encoder, the stem computed once per stream position."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from scoreid.audio.spectrogram import OnlineSpectrogram
from scoreid.identify.windows import HopWindows
from scoreid.incremental import AudioState, assemble_columns
from scoreid.inference import load_model
from scoreid.models import CrossModalNet
from scoreid.models.split import AudioHead, AudioStem, splittable
from scoreid.tensors import audio_to_network
from trainer.export import export_model

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default"
RECORDING = ROOT / "tests" / "data" / "chopin-mazurka06-2-20s.flac"
PARTS = ("audio_stem_onnx", "audio_edge_onnx", "audio_head_onnx")


def _net() -> CrossModalNet:
    torch.manual_seed(0)
    net = CrossModalNet().eval()
    with torch.no_grad():  # BatchNorm statistics and CCA buffers that are not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.3, 0.3)
        net.cca.refit(
            net.pre_cca_audio(torch.rand(64, 1, 92, 84)), net.pre_cca_sheet(torch.rand(64, 1, 80, 100))
        )
    return net


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("incremental")
    export_model(_net(), out, {"preset": "test"}, tensorrt=False, log=lambda s: None)
    return out


def _stream_windows(seconds: float, seed: int, hop: int = 10, gap: tuple[int, int] | None = None):
    """Windows of a random stream of spectrogram frames; ``gap``: frames (from, to) of silence."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((int(seconds * 20) + 5, 92)) * 0.6).astype(np.float32)
    if gap:
        frames[gap[0] : gap[1]] = 0.0
    hw = HopWindows(hop)
    return hw.push(frames[:-3]) + hw.finish(
        frames[-3:]
    )  # the last window ends on an odd frame (5 past a hop)


def test_the_cut_network_is_the_network():
    """Edges from the padded stem, interior from the valid stem, then the head: the embedding of
    the whole network; and the valid stem over a stream gives every window's interior columns."""
    net = _net()
    stem, padded, head = AudioStem(net, valid=True), AudioStem(net, valid=False), AudioHead(net)
    x = torch.rand(4, 1, 92, 84)
    stream = torch.rand(1, 1, 92, 240)
    with torch.inference_mode():
        cols = assemble_columns(padded(x[..., :12]).numpy(), stem(x).numpy(), padded(x[..., -12:]).numpy())
        assert torch.allclose(head(torch.from_numpy(cols)), net.embed_audio(x), atol=1e-6)
        cols = stem(stream)  # column c: stream position 3 + c
        for start in (0, 10, 40, 156):
            window = padded(stream[..., start : start + 84])
            assert torch.allclose(cols[..., start // 2 : start // 2 + 36], window[..., 3:39], atol=1e-6)
        assert not torch.allclose(
            cols[..., 0:1], padded(stream[..., :84])[..., 0:1], atol=1e-3
        )  # edges differ
    assert splittable(net) and not splittable(CrossModalNet(audio_filters=(8, 8), audio_stem="full"))
    assert not splittable(CrossModalNet(audio_stem="stride2"))


def test_a_stream_embeds_as_whole_windows_one_at_a_time_or_batched(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert all(manifest["files"].get(k) for k in PARTS)
    enc = load_model(model_dir)
    assert enc.incremental is not None
    # a silent stretch: the windows in it are not embedded (as the engines skip them), the next restarts
    wins = [w for w in _stream_windows(30.0, 1, gap=(200, 330)) if not w.silent]
    assert (wins[-1].end - 84) % 2 == 1  # the last window starts on an odd frame: embedded whole
    x = audio_to_network(np.stack([w.excerpt for w in wins]))
    whole = enc.embed_audio(x)
    state = enc.new_stream()
    one = np.concatenate([enc.embed_stream(x[i : i + 1], [w.end], [state]) for i, w in enumerate(wins)])
    assert np.abs(one - whole).max() <= 1e-5
    assert state.cols is not None and state.cols.shape[-1] == 36  # bounded: one window's interior
    assert state.nbytes == 36 * 48 * 46 * 4
    # two streams interleaved in batches (as the service batches sessions): the same numbers
    other = [w for w in _stream_windows(12.0, 2) if not w.silent]
    y = audio_to_network(np.stack([w.excerpt for w in other]))
    sa, sb = AudioState(), AudioState()
    got_a, got_b = [], []
    for k in range(0, max(len(wins), len(other)), 3):
        xa, xb = x[k : k + 3], y[k : k + 3]
        ends = [w.end for w in wins[k : k + 3]] + [w.end for w in other[k : k + 3]]
        emb = enc.embed_stream(np.concatenate([xa, xb]), ends, [sa] * len(xa) + [sb] * len(xb))
        got_a.append(emb[: len(xa)])
        got_b.append(emb[len(xa) :])
    assert np.abs(np.concatenate(got_a) - one).max() <= 1e-5
    assert np.abs(np.concatenate(got_b) - enc.embed_audio(y)).max() <= 1e-5


def test_a_model_without_the_graphs_or_asked_not_to_embeds_whole(model_dir, tmp_path):
    enc = load_model(model_dir, incremental=False)
    assert enc.incremental is None and enc.new_stream() is None
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for k in PARTS:
        del manifest["files"][k]
    (old / "manifest.json").write_text(json.dumps(manifest))
    enc2 = load_model(old)
    x = audio_to_network(np.stack([w.excerpt for w in _stream_windows(6.0, 3)]))
    assert enc2.incremental is None
    assert np.array_equal(enc2.embed_stream(x, [0] * len(x), [None] * len(x)), enc2.embed_audio(x))
    with pytest.raises(ValueError, match="one end frame and one state"):
        load_model(model_dir).incremental.embed(x, [84], [AudioState()])  # type: ignore[union-attr]


@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").is_file(), reason="needs the shipped model")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_shipped_model_streams_real_audio_like_whole_windows(precision):
    """On a real recording: fp32 to float rounding, int8 within its own quantisation error (each
    graph calibrated separately; ``trainer/run.py export`` keeps them at a mean cosine >= 0.98 to torch)."""
    enc = load_model(DEFAULT_MODEL, precision=precision)
    assert enc.incremental is not None
    audio, rate = sf.read(RECORDING, dtype="float32")
    assert rate == 22050
    hw = HopWindows(10)
    front = OnlineSpectrogram()
    wins = [w for w in hw.push(front.push(audio)) + hw.finish(front.flush()) if not w.silent]
    x = audio_to_network(np.stack([w.excerpt for w in wins]))
    state = enc.new_stream()
    inc = np.concatenate([enc.embed_stream(x[i : i + 1], [w.end], [state]) for i, w in enumerate(wins)])
    whole = enc.embed_audio(x)
    cos = np.sum(inc * whole, axis=1)
    if precision == "fp32":
        assert np.abs(inc - whole).max() <= 1e-5
    else:
        assert cos.mean() >= 0.99 and cos.min() >= 0.97
        assert not np.allclose(inc, whole, atol=1e-6)  # really the int8 graphs, not the whole one
