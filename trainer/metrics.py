"""Retrieval metrics: rank of the true match, R@k, mean reciprocal rank (MRR), median rank (MR)."""

from __future__ import annotations

import numpy as np

KS = (1, 10, 25)


def true_ranks(queries: np.ndarray, candidates: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """1-based rank of ``candidates[i]`` for ``queries[i]`` by cosine similarity (dot product of
    L2-normalised rows); candidates scoring exactly as high as the true one do not push it down."""
    q = np.asarray(queries, np.float32)
    c = np.asarray(candidates, np.float32)
    if q.shape != c.shape:
        raise ValueError(f"queries {q.shape} and candidates {c.shape} must be paired row by row")
    out = np.empty(len(q), np.int64)
    for s in range(0, len(q), chunk):
        sims = q[s : s + chunk] @ c.T
        own = sims[np.arange(len(sims)), np.arange(s, s + len(sims))]
        out[s : s + chunk] = 1 + (sims > own[:, None]).sum(axis=1)
    return out


def summarize(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """R@k (fraction with rank <= k), MRR and median rank of an array of 1-based ranks."""
    r = np.asarray(ranks, np.float64)
    if r.size == 0:
        raise ValueError("no ranks to summarise")
    out = {f"R@{k}": float((r <= k).mean()) for k in ks}
    out["MRR"] = float((1.0 / r).mean())
    out["MR"] = float(np.median(r))
    return out


def both_directions(audio: np.ndarray, sheet: np.ndarray) -> dict[str, dict[str, float]]:
    """Snippet retrieval summaries for audio -> sheet and sheet -> audio of paired embeddings."""
    return {
        "audio_to_sheet": summarize(true_ranks(audio, sheet)),
        "sheet_to_audio": summarize(true_ranks(sheet, audio)),
    }
