"""NT-Xent, the ranking loss and the distillation loss against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import contrastive_loss, distill_loss, nt_xent, ranking_loss


def test_nt_xent_matches_hand_computation():
    # two samples, 2-d: views z1 = [e1, e2], z2 = [e1, (e1+e2)/sqrt2]
    r = 1 / math.sqrt(2)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [r, r]])
    tau = 0.5
    # all 4 views: v0=e1, v1=e2, v2=e1, v3=(r, r); partner of v0 is v2, v1<->v3
    v = [(1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (r, r)]
    partner = [2, 3, 0, 1]
    total = 0.0
    for i in range(4):
        sims = {j: (v[i][0] * v[j][0] + v[i][1] * v[j][1]) / tau for j in range(4) if j != i}
        total += -(sims[partner[i]] - math.log(sum(math.exp(s) for s in sims.values())))
    expected = total / 4
    assert nt_xent(z1, z2, tau).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_is_low_for_identical_well_separated_views():
    z = torch.eye(4)
    assert nt_xent(z, z, 0.1).item() < nt_xent(z, torch.roll(z, 1, 0), 0.1).item()


def test_ranking_loss_matches_hand_computation():
    r = 1 / math.sqrt(2)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[r, r], [0.0, 1.0]])
    m = 0.6
    # scores s[i][j] = a_i . b_j
    s = [[r, 0.0], [r, 1.0]]
    total = 0.0
    for i in range(2):
        for j in range(2):
            if i == j:
                continue
            total += max(0.0, m - s[i][i] + s[i][j])  # a_i: wrong sheet b_j
            total += max(0.0, m - s[j][j] + s[i][j])  # b_j: wrong audio a_i
    expected = total / 4  # mean over the 2 x 2 matrix
    assert ranking_loss(a, b, m).item() == pytest.approx(expected, rel=1e-6)


def test_ranking_loss_is_zero_when_pairs_beat_negatives_by_the_margin():
    e = torch.eye(3)
    assert ranking_loss(e, e, 0.6).item() == 0.0
    assert ranking_loss(e, e, 1.5).item() > 0.0


def test_contrastive_loss_matches_hand_computation():
    from trainer.losses import contrastive_loss

    r = 1 / math.sqrt(2)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[r, r], [0.0, 1.0]])
    tau = 0.5
    s = [[r, 0.0], [r, 1.0]]  # s[i][j] = a_i . b_j

    def ce(row: list[float], k: int) -> float:  # -log softmax(row / tau)[k]
        return -math.log(math.exp(row[k] / tau) / sum(math.exp(v / tau) for v in row))

    a2b = (ce(s[0], 0) + ce(s[1], 1)) / 2  # each audio row picks its sheet
    b2a = (ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1)) / 2  # each sheet column its audio
    assert contrastive_loss(a, b, tau).item() == pytest.approx((a2b + b2a) / 2, rel=1e-6)
    with pytest.raises(ValueError):
        contrastive_loss(a, b[:1], tau)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(2, 3), torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError):
        ranking_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_distill_loss_is_the_weighted_cosine_gap_plus_infonce():
    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(6, 32, generator=g), dim=1)
    sheet = torch.nn.functional.normalize(torch.randn(6, 32, generator=g), dim=1)
    student = torch.nn.functional.normalize(torch.randn(6, 32, generator=g), dim=1).requires_grad_(True)
    nce = contrastive_loss(student, sheet, 0.1)
    # a student that answers what the teacher answers has no cosine gap: only the InfoNCE term is left
    assert distill_loss(teacher, teacher, sheet, 0.1, 1.0, 0.1).item() == pytest.approx(
        0.1 * contrastive_loss(teacher, sheet, 0.1).item(), rel=1e-6
    )
    gap = 1.0 - (student * teacher).sum(1).mean().item()
    loss = distill_loss(student, teacher, sheet, 0.1, 2.0, 0.5)
    assert loss.item() == pytest.approx(2.0 * gap + 0.5 * nce.item(), rel=1e-5)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    with pytest.raises(ValueError, match="differ in shape"):
        distill_loss(student[:3], teacher, sheet)
