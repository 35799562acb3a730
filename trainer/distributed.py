"""Multi-process (DDP) helpers for ``torchrun --nproc_per_node N trainer/run.py ...`` (gpu preset).

Under torchrun (``WORLD_SIZE`` > 1) each process trains on its own batches (batch / world size,
seed + rank), gradients are averaged by ``DistributedDataParallel``, rank 0 validates, logs and
saves, and broadcasts the validation metric so every rank steps its LR schedule and early
stopping identically. Contrastive negatives are per process (no all-gather), as in a plain
data-parallel SimCLR without global batch negatives.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size) from the torchrun environment (0, 1 when not distributed)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> tuple[int, int]:
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, size


def local_device(requested: str | None) -> torch.device:
    """``requested`` or cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    if dist.is_initialized() and dist.get_world_size() > 1:
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def broadcast_float(value: float, device: torch.device) -> float:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
