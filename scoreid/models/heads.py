"""Heads on top of the encoders: the SimCLR projection head and the fine-tuning embedding head.

- :class:`ProjectionHead` (pre-training only, discarded afterwards): flat -> 512 -> BatchNorm ->
  ReLU -> 32, L2-normalised; its output feeds the NT-Xent loss.
- :class:`EmbeddingHead` (fine-tuning): one linear layer from the flat features to the 32-d
  embedding space; the CCA layer (:mod:`scoreid.models.cca`) follows it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scoreid import contract as C
from scoreid.models.encoders import he_uniform_

PROJ_HIDDEN = 512


class ProjectionHead(nn.Module):
    """SimCLR MLP: flat -> 512 -> BN -> ReLU -> ``dim``, L2-normalised."""

    def __init__(self, in_dim: int, dim: int = C.EMBED_DIM, hidden: int = PROJ_HIDDEN):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


class EmbeddingHead(nn.Module):
    """One linear layer flat -> ``dim`` (not normalised: the CCA layer and L2 come after)."""

    def __init__(self, in_dim: int, dim: int = C.EMBED_DIM):
        super().__init__()
        self.fc = nn.Linear(in_dim, dim)
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
