"""Per-run bookkeeping: metrics rows to CSV and JSON, a loss/metric plot (PNG), seeding, timing.

Every training command writes into its run directory ``metrics.csv`` (one row per epoch),
``metrics.json`` (the same rows plus the run's config) and ``metrics.png`` (training loss and the
validation metrics against the epoch), rewritten after every epoch so a run can be watched.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; returns a numpy Generator for sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class MetricsLog:
    """Rows of metrics for one run directory (restored on resume)."""

    def __init__(self, out_dir: str | Path, config: dict[str, Any], rows: list[dict[str, Any]] | None = None):
        self.dir = Path(out_dir)
        self.config = config
        self.rows: list[dict[str, Any]] = list(rows or [])

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        self.write()

    def write(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with open(self.dir / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        (self.dir / "metrics.json").write_text(
            json.dumps({"config": self.config, "epochs": self.rows}, indent=1) + "\n"
        )
        self.plot()

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.rows:
            return
        x = np.arange(1, len(self.rows) + 1)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for key in ("train_loss", "val_loss"):
            ys = [r.get(key) for r in self.rows]
            if any(y is not None for y in ys):
                ax1.plot(x, [np.nan if y is None else y for y in ys], marker=".", label=key)
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.legend()
        for key in sorted({k for r in self.rows for k in r if k.startswith("val_") and k != "val_loss"}):
            ys = [r.get(key) for r in self.rows]
            ax2.plot(x, [np.nan if y is None else y for y in ys], marker=".", label=key)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("validation")
        ax2.legend(fontsize=7)
        fig.suptitle(str(self.config.get("title", self.dir.name)))
        fig.tight_layout()
        fig.savefig(self.dir / "metrics.png", dpi=80)
        plt.close(fig)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}


def restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
