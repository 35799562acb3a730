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
