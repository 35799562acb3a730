"""``trainer/run.py eval --model M --split test --condition same --out FILE.json``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from scoreid.inference import MANIFEST, load_model
from trainer import presets
from trainer.common import TorchEmbedder, add_common, load_net, set_threads
from trainer.data import CONDITIONS, open_corpus
from trainer.evaluate import Embedder, evaluate

NAME = "eval"
HELP = "snippet retrieval, piece identification and the accuracy-vs-seconds curve of a model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--model", required=True, help="exported model directory, or a fine-tuning run / model.pt")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--condition", default="same", choices=CONDITIONS)
    p.add_argument("--out", required=True, help="result JSON (a PNG plot is written beside it)")
    p.add_argument(
        "--n-pairs", type=int, default=None, help="snippet retrieval pairs (default: the preset's, 2000)"
    )
    p.add_argument(
        "--backend",
        default="onnx",
        choices=("onnx", "torch", "tensorrt"),
        help="backend for an exported model directory",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "int8", "fp16"),
        help="onnx: fp32 (default) or int8 audio encoder; tensorrt: fp16 (default) or fp32",
    )


def run(args: argparse.Namespace) -> int:
    preset = presets.get(args.preset)
    set_threads(args, preset)
    cfg = preset.eval
    if args.n_pairs is not None:
        cfg = dataclasses.replace(cfg, n_pairs=args.n_pairs)
    model = Path(args.model)
    enc: Embedder
    if (model / MANIFEST).is_file():
        loaded = load_model(model, backend=args.backend, precision=args.precision)
        enc, frames = loaded, loaded.audio_frames
    else:
        net = load_net(model)
        enc, frames = TorchEmbedder(net, args.device), net.audio_frames
    evaluate(enc, open_corpus(args.data), args.split, args.condition, cfg, frames, Path(args.out), str(model))
    return 0
