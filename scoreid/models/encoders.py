"""The two VGG-style encoders (audio spectrogram excerpt, sheet window) of REFERENCE "Networks".

Each modality: 4 blocks of [3x3 conv + BatchNorm + ELU] x 2 followed by a 2x2 max-pool, with
24 / 48 / 96 / 96 filters, then a 1x1 conv to 32 channels + BatchNorm, flattened. Weights are
He (Kaiming) uniform initialised. The flat feature size depends on the input size:

- audio (1, 92, 84): 32 x 5 x 5 = 800   (42 frames: 320, 168 frames: 1600)
- sheet (1, 80, 100): 32 x 5 x 6 = 960
"""

from __future__ import annotations

import torch
from torch import nn

from scoreid import contract as C

FILTERS = (24, 48, 96, 96)  #: conv filters per VGG block
BOTTLENECK = 32  #: channels of the final 1x1 conv


def he_uniform_(module: nn.Module) -> None:
    """He (Kaiming) uniform init of every conv/linear weight in ``module``; zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ELU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ELU(),
        nn.MaxPool2d(2),
    )


def _pooled(n: int, blocks: int) -> int:
    for _ in range(blocks):
        n //= 2
    return n


class VGGEncoder(nn.Module):
    """Input (B, 1, H, W) -> flat features (B, 32 * H/16 * W/16) (floor division per pool)."""

    def __init__(self, input_hw: tuple[int, int], filters: tuple[int, ...] = FILTERS):
        super().__init__()
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        layers: list[nn.Module] = []
        cin = 1
        for f in filters:
            layers.append(_block(cin, f))
            cin = f
        layers += [nn.Conv2d(cin, BOTTLENECK, 1, bias=False), nn.BatchNorm2d(BOTTLENECK), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        h, w = (_pooled(n, len(filters)) for n in self.input_hw)
        if h < 1 or w < 1:
            raise ValueError(f"input {self.input_hw} is too small for {len(filters)} pooling blocks")
        self.out_dim = BOTTLENECK * h * w
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def audio_encoder(frames: int = C.AUDIO_WINDOW_FRAMES) -> VGGEncoder:
    """Encoder for (B, 1, 92, frames) spectrogram excerpts."""
    return VGGEncoder((C.N_BINS, frames))


def sheet_encoder() -> VGGEncoder:
    """Encoder for (B, 1, 80, 100) sheet windows."""
    return VGGEncoder((C.SHEET_NET_H, C.SHEET_NET_W))
