"""``trainer/run.py hub-bank --model DIR --data CORPUS``: the audio bank of the hub correction.

Embeds ``--n`` audio windows spread evenly over the training split's performances (condition
``same``: training soundfonts; never the validation sets) with the exported model's own audio
encoder (ONNX, fp32), writes them to ``DIR/hub-bank.npy`` and records the bank, its sha256, the
neighbours ``--k`` and the ``--weight`` in the manifest's ``hub`` entry
(:mod:`scoreid.search.hubness`). Libraries built with the model then score each sheet window's
hubness against the bank (``scoreid library build`` re-scores an existing library from its stored
vectors). The model's fingerprint (its sheet space) does not change. Deterministic: the same
corpus and model give the same bank.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from scoreid.errors import UserError
from scoreid.inference import MANIFEST, load_model, read_manifest
from scoreid.search.hubness import HUB_K, HUB_WEIGHT, bank_sha
from trainer.data import PairSet, open_corpus

NAME = "hub-bank"
HELP = "embed training audio windows as the model's hub bank (the hub correction of library search)"
BANK_FILE = "hub-bank.npy"
BATCH = 256


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="exported model directory (manifest.json)")
    p.add_argument("--data", required=True, help="the aligned corpus the model was trained on")
    p.add_argument("--n", type=int, default=8192, help="audio windows in the bank (default 8192)")
    p.add_argument(
        "--k", type=int, default=HUB_K, help=f"neighbours a window's hubness averages (default {HUB_K})"
    )
    p.add_argument(
        "--weight",
        type=float,
        default=HUB_WEIGHT,
        help=f"weight of the hubness in the search score (default {HUB_WEIGHT}; 0 turns it off)",
    )


def run(args: argparse.Namespace) -> int:
    model = Path(args.model)
    manifest = read_manifest(model)
    if args.n < 1 or args.k < 1 or args.k > args.n or not (0.0 <= args.weight <= 10.0):
        raise UserError("need --n >= 1, 1 <= --k <= --n and --weight in [0, 10]")
    if not (Path(args.data) / "index.json").is_file():
        raise UserError(f"{args.data}: not a corpus (no index.json)")
    pairs = PairSet.from_corpus(open_corpus(args.data), "train", "same")
    if not len(pairs):
        raise UserError(f"{args.data}: no training pairs to draw the bank from")
    enc = load_model(model, threads=1)
    idx = pairs.evenly(args.n)
    parts = [
        enc.embed_audio(pairs.audio_batch(idx[i : i + BATCH], enc.audio_frames))
        for i in range(0, len(idx), BATCH)
    ]
    bank = np.ascontiguousarray(np.concatenate(parts), np.float32)
    np.save(model / BANK_FILE, bank)
    manifest["hub"] = {
        "bank": BANK_FILE,
        "k": int(args.k),
        "weight": float(args.weight),
        "sha256": bank_sha(bank),
        "n": len(bank),
        "source": {"corpus": str(args.data), "split": "train", "condition": "same"},
    }
    (model / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(
        f"hub-bank: {len(bank)} audio windows from {len(set(pairs.piece_of(idx)))} training pieces -> "
        f"{model / BANK_FILE} (k {args.k}, weight {args.weight})"
    )
    return 0
