"""Evaluation of a model on a split and condition: ``trainer/run.py eval``.

1. Snippet retrieval (both directions): ``n_pairs`` aligned pairs of the split's pieces, sampled
   evenly over all pairs of the condition's renders x performances (one pair per onset, see
   :class:`trainer.data.PairSet`); every query ranks all N candidates of the other modality by
   cosine similarity. R@1, R@10, R@25, MRR, median rank (MR), and N, always reported.
2. Piece identification, the published vote scheme: the database holds sheet windows every
   ``db_stride_px`` (50) px along the unrolled strip of each piece (the condition's first render);
   each recording (every performance of the condition) is queried with ``windows_per_recording``
   (100) audio windows spread evenly over the whole recording; each window's ``k`` (25) nearest
   database windows vote for their piece; pieces are ranked by votes. Top-1 accuracy and MRR over
   the recordings (a piece with as many votes as the true one ranks ahead of it). Reported beside
   it, from the same windows and neighbours, under ``product_votes``: the product's vote scheme
   (:func:`scoreid.identify.tally.window_votes`: similarity-weighted, normalised for piece length),
   what ``scoreid identify`` and the services use — not the published protocol, never mixed with it.
3. Piece-ID accuracy vs seconds of audio (2 ... 30 s): from ``curve_starts`` evenly spaced starts
   in each piece's first ``curve_recordings_per_piece`` recordings, only the first d seconds are heard: audio windows every ``curve_hop_frames``
   whose centres lie in the excerpt, cut from the excerpt alone (zero padded outside it), vote as
   above. Written as a PNG plot next to the JSON.

Conditions: ``same`` (training soundfonts and fonts) and ``shifted`` (a soundfont, a music font
and tempi never used in training, with room reverb and noise); see README "Training".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from scoreid import contract as C
from scoreid.errors import UserError
from scoreid.identify.tally import chance_weights, window_votes
from scoreid.search.exact import ExactIndex
from scoreid.sheet.strip import window_at, window_centres
from scoreid.tensors import audio_to_network, audio_window, sheet_to_network
from trainer.corpus.store import Corpus
from trainer.data import CONDITIONS, PairSet
from trainer.metrics import both_directions
from trainer.presets import EvalConfig

CHUNK = 512


class Embedder(Protocol):
    def embed_audio(self, x: np.ndarray) -> np.ndarray: ...

    def embed_sheet(self, x: np.ndarray) -> np.ndarray: ...


def _chunks(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    return (
        np.concatenate([fn(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])
        if len(x)
        else np.zeros((0, C.EMBED_DIM), np.float32)
    )


def audio_lead_of(enc: Any) -> int:
    """The frames from an encoder's audio window centre to the music it matches: a torch network's
    ``audio_lead``, an exported model's contract's ``audio_lead_frames`` (0 when it has neither)."""
    lead = getattr(enc, "audio_lead", None)
    if lead is None:
        lead = getattr(getattr(enc, "contract", None), "audio_lead_frames", 0)
    return int(lead or 0)


def snippet_retrieval(enc: Embedder, pairs: PairSet, n: int, frames: int) -> dict[str, Any]:
    idx = pairs.evenly(n)
    a = np.concatenate(
        [enc.embed_audio(pairs.audio_batch(idx[i : i + CHUNK], frames)) for i in range(0, len(idx), CHUNK)]
    )
    s = np.concatenate(
        [enc.embed_sheet(pairs.sheet_batch(idx[i : i + CHUNK])) for i in range(0, len(idx), CHUNK)]
    )
    return {"N": int(len(idx)), "pairs_available": int(len(pairs)), **both_directions(a, s)}


def _vote_rank(neighbours: np.ndarray, owner: np.ndarray, n_pieces: int, true_piece: int) -> int:
    votes = np.bincount(owner[neighbours.ravel()], minlength=n_pieces)
    return int(1 + (votes > votes[true_piece]).sum()) if votes[true_piece] > 0 else n_pieces


def _product_rank(
    sims: np.ndarray, neighbours: np.ndarray, owner: np.ndarray, weights: np.ndarray, true_piece: int
) -> int:
    """Rank of the true piece under the product's vote scheme (whole recording, no decay)."""
    votes = np.zeros(len(weights))
    for srow, nrow in zip(sims, neighbours):
        hits = [(int(owner[r]), float(sv), float(weights[owner[r]])) for r, sv in zip(nrow, srow)]
        for k, v in window_votes(hits).items():
            votes[k] += v
    return int(1 + (votes > votes[true_piece]).sum()) if votes[true_piece] > 0 else len(weights)


def audio_windows(spec: np.ndarray, centres: np.ndarray, frames: int) -> np.ndarray:
    return audio_to_network(np.stack([audio_window(spec, c, frames) for c in centres]))


def piece_identification(
    enc: Embedder, corpus: Corpus, pids: list[str], condition: str, cfg: EvalConfig, frames: int
) -> dict[str, Any]:
    db, owner, recordings = [], [], []
    pieces: list[str] = []
    for pid in tqdm(pids, desc=f"database ({condition})", leave=False, disable=not sys.stderr.isatty()):
        piece = corpus.load(pid)
        renders = [r for r in piece.renders if r.condition == condition]
        perfs = [p for p in piece.performances if p.condition == condition]
        if not renders or not perfs:
            continue
        pno = len(pieces)
        pieces.append(pid)
        strip = renders[0].strip
        centres = window_centres(strip.shape[1], cfg.db_stride_px)
        wins = sheet_to_network(np.stack([window_at(strip, x) for x in centres]))
        db.append(_chunks(enc.embed_sheet, wins))
        owner.append(np.full(len(centres), pno))
        recordings += [(pno, p.spec.astype(np.float32)) for p in perfs]
    if not pieces:
        raise UserError(f"no pieces with condition {condition!r} in this split")
    index = ExactIndex(np.concatenate(db))
    own = np.concatenate(owner)
    n = len(pieces)
    cw = chance_weights({i: int(c) for i, c in enumerate(np.bincount(own, minlength=n))})
    weights = np.array([cw.get(i, 1.0) for i in range(n)])
    ranks, product = [], []
    for pno, spec in tqdm(
        recordings, desc=f"identify ({condition})", leave=False, disable=not sys.stderr.isatty()
    ):
        t = len(spec)
        lo, hi = frames / 2, max(frames / 2, t - frames / 2)
        centres = np.linspace(lo, hi, cfg.windows_per_recording)
        sims, nn = index.search(_chunks(enc.embed_audio, audio_windows(spec, centres, frames)), cfg.k)
        ranks.append(_vote_rank(nn, own, n, pno))
        product.append(_product_rank(sims, nn, own, weights, pno))
    r = np.asarray(ranks, np.float64)
    pr = np.asarray(product, np.float64)
    result: dict[str, Any] = {
        "pieces": n,
        "recordings": len(recordings),
        "windows_per_recording": cfg.windows_per_recording,
        "k": cfg.k,
        "db_stride_px": cfg.db_stride_px,
        "db_windows": len(index),
        "top1": float((r == 1).mean()),
        "MRR": float((1 / r).mean()),
        # which recordings miss: every recording's piece and the rank of its piece in the vote
        "per_recording": [
            {"piece": pieces[pno], "rank": int(rk), "product_rank": int(pk)}
            for (pno, _), rk, pk in zip(recordings, ranks, product)
        ],
        "product_votes": {"top1": float((pr == 1).mean()), "MRR": float((1 / pr).mean())},
    }
    # accuracy vs seconds of audio (the first curve_recordings_per_piece recordings of each piece)
    per_piece: dict[int, int] = {}
    curve_recordings = []
    for pno, spec in recordings:
        if per_piece.get(pno, 0) < cfg.curve_recordings_per_piece:
            per_piece[pno] = per_piece.get(pno, 0) + 1
            curve_recordings.append((pno, spec))
    acc = []
    for secs in tqdm(
        cfg.curve_seconds, desc=f"seconds curve ({condition})", leave=False, disable=not sys.stderr.isatty()
    ):
        d = int(round(secs * C.FPS))
        hits = []
        for pno, spec in curve_recordings:
            t = len(spec)
            for s0 in np.unique(np.linspace(0, max(0, t - d), cfg.curve_starts).round().astype(int)):
                excerpt = spec[s0 : s0 + d]
                centres = np.arange(cfg.curve_hop_frames / 2, len(excerpt), cfg.curve_hop_frames)
                _, nn = index.search(_chunks(enc.embed_audio, audio_windows(excerpt, centres, frames)), cfg.k)
                hits.append(_vote_rank(nn, own, n, pno) == 1)
        acc.append(float(np.mean(hits)))
    result["accuracy_vs_seconds"] = {
        "seconds": list(cfg.curve_seconds),
        "top1": acc,
        "starts_per_recording": cfg.curve_starts,
    }
    return result


def plot_curve(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = results["piece_identification"]["accuracy_vs_seconds"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(curve["seconds"], curve["top1"], marker="o")
    ax.set_xlabel("seconds of audio heard")
    ax.set_ylabel("piece-ID top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    pi = results["piece_identification"]
    ax.set_title(
        f"{results['split']} / {results['condition']}: {pi['recordings']} recordings, {pi['pieces']} pieces",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def evaluate(
    enc: Embedder,
    corpus: Corpus,
    split: str,
    condition: str,
    cfg: EvalConfig,
    frames: int,
    out_json: Path,
    model_name: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the three evaluations; writes ``out_json`` and ``<out_json stem>.png``."""
    if condition not in CONDITIONS:
        raise UserError(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")
    pids = corpus.ids(split)
    if not pids:
        raise UserError(f"the {split!r} split of {corpus.root} has no pieces")
    pairs = PairSet.from_corpus(corpus, split, condition).require(f"split {split!r}, condition {condition!r}")
    pairs.audio_lead = audio_lead_of(enc)
    results: dict[str, Any] = {
        "model": model_name,
        "corpus": str(corpus.root),
        "split": split,
        "condition": condition,
        "audio_frames": frames,
        "protocol": asdict(cfg),
        "snippet_retrieval": snippet_retrieval(enc, pairs, cfg.n_pairs, frames),
    }
    results["piece_identification"] = piece_identification(enc, corpus, pids, condition, cfg, frames)
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    png = out_json.with_suffix(".png")
    results["plot"] = png.name
    plot_curve(results, png)
    out_json.write_text(json.dumps(results, indent=1) + "\n")
    sr, pi = results["snippet_retrieval"], results["piece_identification"]
    a2s, s2a = sr["audio_to_sheet"], sr["sheet_to_audio"]
    log(
        f"eval {split}/{condition} N={sr['N']}: audio->sheet R@1 {a2s['R@1']:.3f} R@10 {a2s['R@10']:.3f} "
        f"R@25 {a2s['R@25']:.3f} MRR {a2s['MRR']:.3f} MR {a2s['MR']:.0f} | sheet->audio R@1 {s2a['R@1']:.3f} "
        f"MRR {s2a['MRR']:.3f} MR {s2a['MR']:.0f} | piece ID top-1 {pi['top1']:.3f} MRR {pi['MRR']:.3f} "
        f"({pi['recordings']} recordings, {pi['pieces']} pieces) -> {out_json}"
    )
    return results
