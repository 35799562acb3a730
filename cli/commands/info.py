"""``scoreid info``: the feature contract and which inference backends this machine has."""

from __future__ import annotations

import argparse
import importlib.util
import json

from scoreid import contract

NAME = "info"
HELP = "print the feature contract and the available inference backends as JSON"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def backends() -> dict[str, str]:
    out = {}
    for mod, what in (("onnxruntime", "onnx (CPU)"), ("torch", "torch"), ("tensorrt", "tensorrt (GPU)")):
        out[what] = "available" if importlib.util.find_spec(mod) else "not installed"
    if importlib.util.find_spec("torch"):
        import torch

        out["cuda"] = "available" if torch.cuda.is_available() else "no CUDA device"
    return out


def run(args: argparse.Namespace) -> int:
    print(json.dumps({"contract": contract.DEFAULT.to_dict(), "backends": backends()}, indent=2))
    return 0
