"""A few training steps on a fixed batch lower the loss (fine-tuning and pre-training)."""

from __future__ import annotations

import pytest
import torch

from scoreid.models import CrossModalNet
from trainer.finetune import train_step as finetune_step
from trainer.losses import nt_xent, ranking_loss
from trainer.pretrain import PretrainNet
from trainer.pretrain import train_step as pretrain_step


def test_finetune_steps_lower_the_ranking_loss():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = CrossModalNet()
    opt = torch.optim.Adam(net.parameters(), lr=4e-4)
    # paired inputs that share structure: sheet = coarse view of the audio pattern
    audio = torch.rand(40, 1, 92, 84)
    sheet = torch.nn.functional.interpolate(audio, size=(80, 100)).clamp(0, 1)
    with torch.no_grad():
        net.train()
        before = ranking_loss(*net(audio, sheet), 0.6).item()
    for _ in range(2):
        finetune_step(net, opt, audio, sheet, 0.6)
    with torch.no_grad():
        after = ranking_loss(*net(audio, sheet), 0.6).item()
    assert after < before


def test_pretrain_steps_lower_nt_xent():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = PretrainNet("sheet", 84)
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    v1 = (torch.rand(16, 1, 80, 100) < 0.1).float()
    v2 = (v1 + 0.1 * torch.randn_like(v1)).clamp(0, 1)
    net.train()
    with torch.no_grad():
        before = nt_xent(net(v1), net(v2), 0.5).item()
    losses = [pretrain_step(net, opt, v1, v2, 0.5) for _ in range(4)]
    assert losses[0] == pytest.approx(before, rel=0.05)
    with torch.no_grad():
        after = nt_xent(net(v1), net(v2), 0.5).item()
    assert after < before


def test_finetune_steps_lower_the_contrastive_loss_without_cca_in_training():
    """The cpu preset's objective: InfoNCE with the CCA layer left as it is (identity) in training."""
    from trainer.losses import contrastive_loss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = CrossModalNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    audio = torch.rand(32, 1, 92, 84)
    sheet = torch.nn.functional.interpolate(audio, size=(80, 100)).clamp(0, 1)
    net.train()
    net.cca.eval()
    with torch.no_grad():
        before = contrastive_loss(*net(audio, sheet)).item()
    for _ in range(3):
        finetune_step(net, opt, audio, sheet, 0.6, loss_name="contrastive", tau=0.1, cca_in_training=False)
    assert not net.cca.training and torch.equal(net.cca.proj_a, torch.eye(32))  # never touched
    with torch.no_grad():
        after = contrastive_loss(*net(audio, sheet)).item()
    assert after < before
