"""The two training losses of the method.

- :func:`nt_xent` (SimCLR pre-training, REFERENCE "Losses"): for a batch of N samples with two
  augmented views, the 2N L2-normalised projections are compared by cosine similarity divided by
  the temperature ``tau``; each view must pick out its partner among the other 2N - 1 views
  (cross-entropy). Temperatures: audio 0.6, sheet 0.5.
- :func:`ranking_loss` (cross-modal fine-tuning; Dorfer et al. 2018): pairwise hinge over all
  in-batch negatives with cosine similarity ``s`` (= dot product of L2-normalised embeddings)::

      L = mean over the N x N matrix of [ max(0, m - s(a_i, b_i) + s(a_i, b_j))
                                        + max(0, m - s(a_j, b_j) + s(a_i, b_j)) ],  i != j

  (the diagonal contributes 0), margin ``m`` = 0.6. Both retrieval directions are penalised.
- :func:`contrastive_loss` (our fine-tuning choice, measured in RESULTS.md): symmetric InfoNCE over
  the in-batch cosine similarities divided by ``tau`` — each audio excerpt must pick out its sheet
  window among the batch's, and each window its excerpt (cross-entropy both ways). Every negative
  is weighted by how close it comes (softmax), so the hard ones dominate the gradient; the hinge
  above weighs all violating negatives alike.
- :func:`distill_loss` (a student audio encoder, :mod:`trainer.distill`): keeps the student in the
  teacher's embedding space, where the library's sheet embeddings are::

      L = COS_WEIGHT * mean_i (1 - s(a_i, t_i)) + NCE_WEIGHT * InfoNCE(a, b; tau)

  with ``a`` the student's audio embeddings, ``t`` the teacher's of the same (augmented) excerpts
  and ``b`` the teacher's sheet embeddings of the batch's windows (both fixed targets). The first
  term is the distillation proper: the student should answer what the teacher answers, so that
  neighbour search, vote temperature and calibration, tuned on the teacher's similarities, carry
  over. The second is the fine-tuning objective against the fixed sheet embeddings: it weights the
  batch's hard negatives, which a mean cosine gap treats like easy ones. Weights 1 and 0.1: at
  tau 0.1 the InfoNCE gradient with respect to one embedding is of the order of 1 / tau = 10
  times the cosine term's (the softmax-weighted sheet embeddings minus the positive, over tau,
  against the teacher's unit vector), so 0.1 puts both on one scale early in training, and the cosine term
  dominates once the student is close to the teacher and the softmax concentrates on the
  positive. Neither weight is tuned by a measurement yet; both are options of ``distill``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TAU_AUDIO = 0.6  #: NT-Xent temperature for audio pre-training
TAU_SHEET = 0.5  #: NT-Xent temperature for sheet pre-training
MARGIN = 0.6  #: hinge margin of the fine-tuning ranking loss


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent of two views (N, d) each (normalised here, so raw projections are fine)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"views must have equal shape (N, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


TAU_FINETUNE = 0.1  #: temperature of the fine-tuning contrastive loss


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, tau: float = TAU_FINETUNE) -> torch.Tensor:
    """Symmetric InfoNCE of paired L2-normalised embeddings ``a``, ``b`` (N, d)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"embeddings must have equal shape (N, d), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    logits = a @ b.T / tau
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


COS_WEIGHT = 1.0  #: distillation: weight of the student-teacher cosine gap
NCE_WEIGHT = 0.1  #: distillation: weight of InfoNCE against the teacher's sheet embeddings


def distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    sheet: torch.Tensor,
    tau: float = TAU_FINETUNE,
    cos_weight: float = COS_WEIGHT,
    nce_weight: float = NCE_WEIGHT,
) -> torch.Tensor:
    """Distillation loss of the student's L2-normalised audio embeddings (N, d) against the
    teacher's audio (``teacher``) and sheet (``sheet``) embeddings of the same pairs."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher embeddings differ in shape: {tuple(student.shape)} "
            f"and {tuple(teacher.shape)}"
        )
    gap = (1.0 - (student * teacher).sum(dim=1)).mean()
    return cos_weight * gap + nce_weight * contrastive_loss(student, sheet, tau)


def ranking_loss(a: torch.Tensor, b: torch.Tensor, margin: float = MARGIN) -> torch.Tensor:
    """Symmetric pairwise hinge loss of paired L2-normalised embeddings ``a``, ``b`` (N, d)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"embeddings must have equal shape (N, d), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    scores = a @ b.T  # scores[i, j] = s(a_i, b_j)
    pos = scores.diagonal()
    cost_b = (margin - pos.unsqueeze(1) + scores).clamp_min(0)  # a_i against wrong sheets b_j
    cost_a = (margin - pos.unsqueeze(0) + scores).clamp_min(0)  # b_j against wrong audio a_i
    off = ~torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    return ((cost_a + cost_b) * off).mean()
