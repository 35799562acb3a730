"""Retrieval metrics and the piece-identification vote on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluate import _product_rank, _vote_rank
from trainer.metrics import summarize, true_ranks


def test_true_ranks_and_summary():
    e = np.eye(3, dtype=np.float32)
    cands = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1]], np.float32)
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    ranks = true_ranks(e, cands)
    assert ranks.tolist() == [1, 1, 1]
    q = np.array(
        [[1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32
    )  # query 1 prefers cand 0; query 2 prefers cand 1
    ranks = true_ranks(q, cands)
    assert ranks.tolist() == [1, 2, 2]
    s = summarize(np.array([1, 2, 30, 4]))
    assert s["R@1"] == 0.25 and s["R@10"] == 0.75 and s["R@25"] == 0.75
    assert s["MRR"] == pytest.approx((1 + 0.5 + 1 / 30 + 0.25) / 4)
    assert s["MR"] == 3.0


def test_vote_rank_counts_neighbour_pieces():
    owner = np.array([0, 0, 1, 1, 2])
    nn = np.array([[0, 2, 3], [1, 3, 4]])  # votes: piece0 2, piece1 3, piece2 1
    assert _vote_rank(nn, owner, 3, 1) == 1
    assert _vote_rank(nn, owner, 3, 0) == 2
    assert _vote_rank(nn, owner, 3, 2) == 3
    assert _vote_rank(np.array([[0, 1]]), owner, 3, 2) == 3  # no votes: last


def test_product_rank_weights_similarity_and_piece_length():
    # piece 0 is long (8 windows), piece 1 short (2): chance weights (5/8)**0.75 and (5/2)**0.75
    owner = np.array([0] * 8 + [1] * 2)
    weights = np.array([(5 / 8) ** 0.75, (5 / 2) ** 0.75])
    nn = np.array([[8, 0, 1], [9, 2, 3]])  # each window: best neighbour in piece 1, two in piece 0
    sims = np.array([[0.90, 0.89, 0.88], [0.90, 0.89, 0.88]])
    assert _vote_rank(nn, owner, 2, 1) == 2  # published: 4 votes for piece 0, 2 for piece 1
    assert _product_rank(sims, nn, owner, weights, 1) == 1  # product: the short piece's best matches win
    assert _product_rank(sims, nn, owner, weights, 0) == 2
