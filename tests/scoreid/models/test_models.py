"""The shared model definitions: encoder shapes and init, heads, CCA whitening, checkpoints, and the
configurable (student) audio architectures."""

from __future__ import annotations

import pytest
import torch

from scoreid.models import (
    CrossModalNet,
    ProjectionHead,
    audio_encoder,
    load_checkpoint,
    save_checkpoint,
    sheet_encoder,
)
from scoreid.models.cca import CCALayer
from scoreid.models.crossmodal import TORCH_FORMAT
from scoreid.models.encoders import multiply_adds


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.mark.parametrize("frames,flat", [(42, 320), (84, 800), (168, 1600)])
def test_audio_encoder_shapes(frames, flat):
    enc = audio_encoder(frames).eval()
    assert enc.out_dim == flat
    with torch.no_grad():
        assert enc(torch.zeros(2, 1, 92, frames)).shape == (2, flat)


def test_sheet_encoder_shape_and_layers():
    enc = sheet_encoder().eval()
    assert enc.out_dim == 960
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [24, 24, 48, 48, 96, 96, 96, 96, 32]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 8 + [(1, 1)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules()) == 9
    assert sum(isinstance(m, torch.nn.ELU) for m in enc.modules()) == 8
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in enc.modules()) == 4


def test_he_uniform_init_bounds():
    enc = sheet_encoder()
    conv = enc.net[1][0]  # second block, first conv: 24 -> 48
    fan_in = 24 * 9
    bound = (6.0 / fan_in) ** 0.5
    w = conv.weight.detach()
    assert w.abs().max() <= bound + 1e-6
    assert w.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)  # uniform(-b, b) has std b/sqrt(3)


def test_projection_head_is_l2_normalised():
    head = ProjectionHead(800).eval()
    z = head(torch.randn(5, 800))
    assert z.shape == (5, 32)
    assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)


def _correlated(n: int, dim: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, dim, generator=g)
    a = shared @ torch.randn(dim, dim, generator=g) + 0.5 * torch.randn(n, dim, generator=g) + 3.0
    b = shared @ torch.randn(dim, dim, generator=g) + 0.5 * torch.randn(n, dim, generator=g) - 1.0
    return a, b


def test_cca_refit_whitens_to_identity_covariance():
    a, b = _correlated(20000)
    cca = CCALayer(32, reg=1e-6)
    corr = cca.refit(a, b)
    cca.eval()
    pa, pb = cca(a, b)
    eye = torch.eye(32)
    cov_a = pa.T @ pa / (len(pa) - 1)
    cov_b = pb.T @ pb / (len(pb) - 1)
    assert torch.allclose(pa.mean(0), torch.zeros(32), atol=1e-3)
    assert torch.allclose(cov_a, eye, atol=1e-3)
    assert torch.allclose(cov_b, eye, atol=1e-3)
    cross = pa.T @ pb / (len(pa) - 1)  # diagonal = canonical correlations, sorted, off-diagonal ~0
    assert torch.allclose(cross, torch.diag(corr), atol=1e-3)
    assert bool((corr[:-1] >= corr[1:] - 1e-6).all()) and 0.5 < corr[0].item() < 1.0


def test_cca_training_mode_uses_batch_statistics_and_has_finite_gradients():
    a, b = _correlated(256, seed=1)
    a.requires_grad_(True)
    cca = CCALayer(32).train()
    pa, pb = cca(a, b)
    cov = pa.T @ pa / 255
    assert torch.allclose(cov, torch.eye(32), atol=0.05)  # whitened by this batch's statistics
    (pa * pb).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert not torch.allclose(cca.mean_a, torch.zeros(32))  # running statistics moved


def test_crossmodal_net_embeddings_and_checkpoint_roundtrip(tmp_path):
    net = CrossModalNet()
    audio, sheet = torch.randn(40, 1, 92, 84), torch.rand(40, 1, 80, 100)
    net.train()
    ea, es = net(audio, sheet)
    assert ea.shape == es.shape == (40, 32)
    assert torch.allclose(ea.norm(dim=1), torch.ones(40), atol=1e-5)
    net.eval()
    with torch.no_grad():
        net.cca.refit(net.pre_cca_audio(audio), net.pre_cca_sheet(sheet))
        ref = net.embed_audio(audio[:3])
    save_checkpoint(net, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.allclose(loaded.embed_audio(audio[:3]), ref, atol=1e-6)
    with pytest.raises(ValueError):
        CrossModalNet(audio_frames=50)
    torch.save({"something": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a scoreid torch checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_default_architecture_is_the_papers():
    """The default network is the one every shipped checkpoint holds: same parameters and shapes."""
    net = CrossModalNet()
    assert sum(p.numel() for p in net.parameters()) == 718384 and len(net.state_dict()) == 120
    convs = [m for m in net.audio_encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [24, 24, 48, 48, 96, 96, 96, 96, 32]
    assert [c.stride for c in convs] == [(1, 1)] * 9
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.audio_encoder.modules()) == 4
    assert net.audio_encoder.out_dim == 800 and net.audio_head.fc.weight.shape == (32, 800)
    assert net.config == {
        "audio_frames": 84,
        "dim": 32,
        "audio_filters": [24, 48, 96, 96],
        "audio_stem": "full",
    }
    # blocks 41.7 + 60.1 + 60.1 + 18.2 M, the 1x1 conv 0.08 M
    assert multiply_adds(net.audio_encoder, (1, 92, 84)) == 180_241_536


@pytest.mark.parametrize("frames,flat", [(42, 320), (84, 800), (168, 1600)])
def test_student_architectures_keep_the_feature_size(frames, flat):
    small = audio_encoder(frames, (12, 24, 48, 48)).eval()
    strided = audio_encoder(frames, (12, 24, 48, 48), "stride2").eval()
    convs = [m for m in strided.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [12, 12, 24, 24, 48, 48, 48, 48, 32]
    assert [c.stride for c in convs] == [(2, 2)] + [(1, 1)] * 8
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules()) == 3
    with torch.no_grad():
        for enc in (small, strided):
            assert enc.out_dim == flat and enc(torch.zeros(2, 1, 92, frames)).shape == (2, flat)
    big = multiply_adds(audio_encoder(frames), (1, 92, frames))
    assert multiply_adds(strided, (1, 92, frames)) < multiply_adds(small, (1, 92, frames)) < big / 3


def test_student_checkpoint_roundtrip(tmp_path):
    net = CrossModalNet(audio_filters=(12, 24, 48, 48), audio_stem="stride2").eval()
    audio, sheet = torch.randn(40, 1, 92, 84), torch.rand(40, 1, 80, 100)
    with torch.no_grad():
        net.cca.refit(net.pre_cca_audio(audio), net.pre_cca_sheet(sheet))
        ref_a, ref_s = net.embed_audio(audio[:5]), net.embed_sheet(sheet[:5])
    save_checkpoint(net, tmp_path / "student.pt")
    loaded = load_checkpoint(tmp_path / "student.pt")
    assert (
        loaded.config
        == net.config
        == {"audio_frames": 84, "dim": 32, "audio_filters": [12, 24, 48, 48], "audio_stem": "stride2"}
    )
    with torch.no_grad():
        assert torch.equal(loaded.embed_audio(audio[:5]), ref_a)
        assert torch.equal(loaded.embed_sheet(sheet[:5]), ref_s)
    with pytest.raises(RuntimeError):  # the student's weights do not fit the default network
        CrossModalNet().load_state_dict(net.state_dict())


def test_checkpoint_without_architecture_loads_the_default_network(tmp_path):
    """Checkpoints written before the audio architecture was configurable have only frames and dim."""
    net = CrossModalNet().eval()
    payload = {
        "format": TORCH_FORMAT,
        "config": {"audio_frames": 84, "dim": 32},
        "state_dict": net.state_dict(),
    }
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded.config == net.config
    x = torch.randn(3, 1, 92, 84)
    with torch.no_grad():
        assert torch.equal(loaded.embed_audio(x), net.embed_audio(x))


def test_unknown_architectures_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown stem"):
        CrossModalNet(audio_stem="stride4")
    with pytest.raises(ValueError, match="positive"):
        audio_encoder(84, (12, 0, 48, 48))
    with pytest.raises(ValueError, match="too small"):
        audio_encoder(42, (8,) * 7)
    net = CrossModalNet()
    torch.save(
        {"format": TORCH_FORMAT, "config": {**net.config, "audio_stem": "x"}, "state_dict": net.state_dict()},
        tmp_path / "bad.pt",
    )
    with pytest.raises(ValueError, match="unknown stem"):
        load_checkpoint(tmp_path / "bad.pt")
