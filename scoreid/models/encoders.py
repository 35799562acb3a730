"""The two VGG-style encoders (audio spectrogram excerpt, sheet window) of REFERENCE "Networks".

Each modality: 4 blocks of [3x3 conv + BatchNorm + ELU] x 2 followed by a 2x2 max-pool, with
24 / 48 / 96 / 96 filters, then a 1x1 conv to 32 channels + BatchNorm, flattened. Weights are
He (Kaiming) uniform initialised. The flat feature size depends on the input size:

- audio (1, 92, 84): 32 x 5 x 5 = 800   (42 frames: 320, 168 frames: 1600)
- sheet (1, 80, 100): 32 x 5 x 6 = 960

Smaller audio encoders (distilled students, :mod:`trainer.distill`) take other ``filters`` per block
and optionally the ``stride2`` stem: the first block's first conv has stride 2 and the block has no
max-pool, so its second conv runs at half resolution in each axis (a quarter of the positions) and
the block's output has the size the default block's pool gives it (for the even input sizes of the
contract; ``ceil`` instead of ``floor`` for odd ones). The default stem is ``full``: the paper's
block at the input resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from scoreid import contract as C

FILTERS = (24, 48, 96, 96)  #: conv filters per VGG block
BOTTLENECK = 32  #: channels of the final 1x1 conv
STEMS = ("full", "stride2")  #: first-block variants (see the module docstring)
STEM = "full"  #: the paper's first block


def he_uniform_(module: nn.Module) -> None:
    """He (Kaiming) uniform init of every conv/linear weight in ``module``; zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _block(cin: int, cout: int, strided: bool = False) -> nn.Sequential:
    """[3x3 conv + BN + ELU] x 2 + 2x2 max-pool; ``strided``: the first conv has stride 2, no pool."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2 if strided else 1, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ELU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ELU(),
        *(() if strided else (nn.MaxPool2d(2),)),
    )


def _pooled(n: int, blocks: int, stem: str = STEM) -> int:
    for b in range(blocks):
        n = (n + 1) // 2 if b == 0 and stem == "stride2" else n // 2
    return n


def check_architecture(filters: tuple[int, ...], stem: str) -> tuple[int, ...]:
    """``filters`` as a tuple of positive ints; ValueError for an empty list or an unknown stem."""
    out = tuple(int(f) for f in filters)
    if not out or min(out) < 1:
        raise ValueError(f"filters must be one or more positive numbers, got {list(filters)}")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; one of {', '.join(STEMS)}")
    return out


class VGGEncoder(nn.Module):
    """Input (B, 1, H, W) -> flat features (B, 32 * H/16 * W/16) (floor division per pool)."""

    def __init__(self, input_hw: tuple[int, int], filters: tuple[int, ...] = FILTERS, stem: str = STEM):
        super().__init__()
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.filters, self.stem = check_architecture(filters, stem), stem
        layers: list[nn.Module] = []
        cin = 1
        for i, f in enumerate(self.filters):
            layers.append(_block(cin, f, strided=i == 0 and stem == "stride2"))
            cin = f
        layers += [nn.Conv2d(cin, BOTTLENECK, 1, bias=False), nn.BatchNorm2d(BOTTLENECK), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        h, w = (_pooled(n, len(self.filters), stem) for n in self.input_hw)
        if h < 1 or w < 1:
            raise ValueError(f"input {self.input_hw} is too small for {len(filters)} pooling blocks")
        self.out_dim = BOTTLENECK * h * w
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def audio_encoder(
    frames: int = C.AUDIO_WINDOW_FRAMES, filters: tuple[int, ...] = FILTERS, stem: str = STEM
) -> VGGEncoder:
    """Encoder for (B, 1, 92, frames) spectrogram excerpts (the paper's unless ``filters``/``stem``)."""
    return VGGEncoder((C.N_BINS, frames), filters, stem)


def sheet_encoder() -> VGGEncoder:
    """Encoder for (B, 1, 80, 100) sheet windows."""
    return VGGEncoder((C.SHEET_NET_H, C.SHEET_NET_W))


def multiply_adds(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of the Conv2d and Linear layers of ``module`` for one input of ``shape``
    (without the batch axis), counted with forward hooks on the real modules."""
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = module.training
    try:
        with torch.inference_mode():
            module.eval()(torch.zeros((1, *shape)))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return total
