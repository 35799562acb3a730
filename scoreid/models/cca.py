"""The CCA projection layer of the fine-tuning network (Dorfer et al. 2018; REFERENCE "Networks").

Given paired 32-d embeddings ``a`` (audio) and ``b`` (sheet), CCA finds linear maps ``A``, ``B``
such that the projected views are each white (identity covariance) and maximally correlated
(their cross-covariance is diagonal with the canonical correlations):

    S_aa, S_bb, S_ab  = covariances (+ ``reg`` * I on the diagonals)
    T                 = S_aa^-1/2 S_ab S_bb^-1/2 = U diag(s) V^T
    A = S_aa^-1/2 U,   B = S_bb^-1/2 V,          a' = (a - mean_a) A,   b' = (b - mean_b) B

In training the statistics come from the batch and gradients flow through the decomposition; a
running average of the statistics (``momentum``) keeps buffers usable in eval mode. After
training, :meth:`CCALayer.refit` recomputes the buffers from a large set of training pairs
(~25 000), which is what the exported model uses. The layer does not L2-normalise; the network
does that after it. Eval mode is two affine maps, so it exports to ONNX as a Sub + MatMul.
"""

from __future__ import annotations

import torch
from torch import nn

CCA_REG = 1e-3  #: ridge added to the diagonal of both auto-covariances
CCA_MOMENTUM = 0.05  #: running-statistics update rate per training batch


def _inv_sqrt(s: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(1e-12).rsqrt()) @ v.T


def cca_projections(
    s_aa: torch.Tensor, s_bb: torch.Tensor, s_ab: torch.Tensor, reg: float = CCA_REG
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, B, canonical correlations) from covariances; differentiable."""
    eye = torch.eye(s_aa.shape[0], dtype=s_aa.dtype, device=s_aa.device)
    ia = _inv_sqrt(s_aa + reg * eye)
    ib = _inv_sqrt(s_bb + reg * eye)
    u, s, vh = torch.linalg.svd(ia @ s_ab @ ib)
    return ia @ u, ib @ vh.T, s


def covariances(
    a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean_a, mean_b, S_aa, S_bb, S_ab) of paired rows, unbiased."""
    n = a.shape[0]
    if n < 2:
        raise ValueError("CCA needs at least 2 pairs")
    ma, mb = a.mean(0), b.mean(0)
    ac, bc = a - ma, b - mb
    return ma, mb, ac.T @ ac / (n - 1), bc.T @ bc / (n - 1), ac.T @ bc / (n - 1)


class CCALayer(nn.Module):
    """Whitening + alignment of two paired views; batch statistics in training, buffers in eval."""

    mean_a: torch.Tensor
    mean_b: torch.Tensor
    proj_a: torch.Tensor
    proj_b: torch.Tensor
    cov_aa: torch.Tensor
    cov_bb: torch.Tensor
    cov_ab: torch.Tensor
    corr: torch.Tensor

    def __init__(self, dim: int, reg: float = CCA_REG, momentum: float = CCA_MOMENTUM):
        super().__init__()
        self.dim, self.reg, self.momentum = dim, reg, momentum
        eye = torch.eye(dim)
        self.register_buffer("mean_a", torch.zeros(dim))
        self.register_buffer("mean_b", torch.zeros(dim))
        self.register_buffer("proj_a", eye.clone())
        self.register_buffer("proj_b", eye.clone())
        self.register_buffer("cov_aa", eye.clone())
        self.register_buffer("cov_bb", eye.clone())
        self.register_buffer("cov_ab", torch.zeros(dim, dim))
        self.register_buffer("corr", torch.zeros(dim))

    def project_a(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.mean_a) @ self.proj_a

    def project_b(self, b: torch.Tensor) -> torch.Tensor:
        return (b - self.mean_b) @ self.proj_b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.project_a(a), self.project_b(b)
        a64, b64 = a.double(), b.double()
        ma, mb, s_aa, s_bb, s_ab = covariances(a64, b64)
        pa, pb, _ = cca_projections(s_aa, s_bb, s_ab, self.reg)
        with torch.no_grad():
            m = self.momentum
            self.mean_a.lerp_(ma.float(), m)
            self.mean_b.lerp_(mb.float(), m)
            self.cov_aa.lerp_(s_aa.float(), m)
            self.cov_bb.lerp_(s_bb.float(), m)
            self.cov_ab.lerp_(s_ab.float(), m)
            self._set_projections(self.cov_aa.double(), self.cov_bb.double(), self.cov_ab.double())
        return ((a64 - ma) @ pa).to(a.dtype), ((b64 - mb) @ pb).to(b.dtype)

    @torch.no_grad()
    def _set_projections(self, s_aa: torch.Tensor, s_bb: torch.Tensor, s_ab: torch.Tensor) -> None:
        pa, pb, s = cca_projections(s_aa, s_bb, s_ab, self.reg)
        self.proj_a.copy_(pa.float())
        self.proj_b.copy_(pb.float())
        self.corr.copy_(s.float())

    @torch.no_grad()
    def refit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Recompute all buffers from paired views ``a``, ``b`` (N, dim); returns the correlations."""
        ma, mb, s_aa, s_bb, s_ab = covariances(a.double(), b.double())
        self.mean_a.copy_(ma.float())
        self.mean_b.copy_(mb.float())
        self.cov_aa.copy_(s_aa.float())
        self.cov_bb.copy_(s_bb.float())
        self.cov_ab.copy_(s_ab.float())
        self._set_projections(s_aa, s_bb, s_ab)
        return self.corr.clone()
