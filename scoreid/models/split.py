"""The audio pathway cut in two for the incremental encoder: a *stem* that can run on a stream and a
*head* that runs per window (issue 32; the runtime is :mod:`scoreid.incremental`).

The audio encoder is a stack of convolutions over time (:mod:`scoreid.models.encoders`). Its first
block and the two convolutions of its second (everything before the second max-pool) have a time
stride of 2, so for windows that start on an even frame their activations are the same wherever the
window starts — except near the window's edges, where the convolutions see the window's zero
padding. The cut:

- :class:`AudioStem` (``valid=True``): block 1 and block 2's convolutions with **no time padding**
  (frequency padding as trained): ``T`` frames in, ``(T - 12) / 2`` columns out, column ``c`` being
  the stem's activation at stream position ``P = first_frame / 2 + 3 + c`` (it reads frames
  ``2P - 6 … 2P + 7``). A window's interior columns ``3 … 38`` (84 frames: 42 columns) are such
  columns, so each is computed once per stream and reused by the next windows.
- the same stem with the trained padding (``valid=False``) on the window's first or last
  :data:`scoreid.incremental.EDGE_FRAMES` frames gives its three edge columns on each side (those that see the padding).
- :class:`AudioHead`: block 2's max-pool, the blocks after it, the 1x1 bottleneck, the linear head,
  the CCA projection and L2 normalisation: the window's 42 stem columns in, its embedding out.

``head(concat(edge_left[:3], interior, edge_right[3:]))`` is the window's embedding, equal to
``CrossModalNet.embed_audio`` up to float rounding (``tests/scoreid/test_incremental.py``). Only the
paper's block layout (``stem="full"``, at least three blocks) can be cut this way
(:func:`splittable`).
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from scoreid.incremental import STRIDE
from scoreid.models.crossmodal import CrossModalNet

#: stem blocks (block 2 without its max-pool: the pool would put the time stride at 4, and a 10-frame hop is not a multiple of 4)
STEM_BLOCKS = 2


def splittable(net: CrossModalNet) -> bool:
    """Whether ``net``'s audio encoder has the layout the cut needs (the paper's first block)."""
    enc = net.audio_encoder
    return enc.stem == "full" and len(enc.filters) > STEM_BLOCKS and net.audio_frames % STRIDE == 0


def _blocks(net: CrossModalNet) -> list[nn.Sequential]:
    """The audio encoder's layers: its VGG blocks, then the bottleneck conv, BatchNorm and flatten."""
    return [cast(nn.Sequential, b) for b in net.audio_encoder.net.children()]


class AudioStem(nn.Module):
    """(B, 1, bins, T) -> (B, C, bins / 2, T / 2) (``valid=False``, the trained padding) or
    (B, C, bins / 2, (T - 12) / 2) (``valid=True``: no padding along time)."""

    def __init__(self, net: CrossModalNet, valid: bool):
        super().__init__()
        if not splittable(net):
            raise ValueError(
                "this audio encoder cannot be cut into a stem and a head (stem 'full', > 2 blocks)"
            )
        blocks = _blocks(net)
        layers = [*blocks[0].children(), *list(blocks[1].children())[:-1]]  # block 2 without its max-pool
        self.net = copy.deepcopy(nn.Sequential(*layers))
        if valid:
            for m in self.net.modules():
                if isinstance(m, nn.Conv2d):
                    m.padding = (int(m.padding[0]), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioHead(nn.Module):
    """(B, C, bins / 2, F / 2) stem columns of a window -> (B, 32) L2-normalised embedding."""

    def __init__(self, net: CrossModalNet):
        super().__init__()
        if not splittable(net):
            raise ValueError(
                "this audio encoder cannot be cut into a stem and a head (stem 'full', > 2 blocks)"
            )
        blocks = _blocks(net)
        self.rest = copy.deepcopy(nn.Sequential(list(blocks[1].children())[-1], *blocks[STEM_BLOCKS:]))
        self.head = copy.deepcopy(net.audio_head)
        self.cca = copy.deepcopy(net.cca)

    def forward(self, columns: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.cca.project_a(self.head(self.rest(columns))), dim=1)
