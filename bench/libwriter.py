"""A core library directory (``scoreid.library.store`` format) written from given window vectors,
for the benches and tests that need a library without engraving pages (``bench.engine_cost``, the
engine and service tests): each piece's rows are windows every ``stride`` px of its strip, a
system every ``per_system`` windows, the systems on two pages."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from scoreid import contract as C
from scoreid.library.store import FORMAT, PieceVectors, save_piece, write_index


def write_core_library(
    out: Path,
    vectors: Mapping[str, np.ndarray],
    contract: C.Contract | None = None,
    stride: float = 6.0,
    per_system: int = 20,
    model_dir: str = "",
) -> Path:
    contract = contract or C.Contract()
    pieces = {}
    for pid, vecs in vectors.items():
        n = len(vecs)
        idx = np.arange(n)
        system = (idx // per_system).astype(np.int16)
        n_sys = int(system.max()) + 1
        per_page = (n_sys + 1) // 2
        page = (system // per_page).astype(np.int16)
        on_page = (system % per_page).astype(np.int16)
        sys_w = stride * per_system
        strip_x = ((idx + 0.5) * stride).astype(np.float32)
        meta: dict[str, np.ndarray] = {
            "page": page,
            "system": on_page,
            "x": (strip_x - system * sys_w + 60.0).astype(np.float32),
            "y0": (100.0 + 300.0 * on_page).astype(np.float32),
            "y1": (260.0 + 300.0 * on_page).astype(np.float32),
            "strip_x": strip_x,
        }
        save_piece(out, pid, PieceVectors(np.asarray(vecs, np.float32), meta))
        pages = [
            {
                "file": f"p{k + 1}.png",
                "page": 0,
                "angle_deg": 0.0,
                "staff_space": 7.0,
                "systems": [
                    [100 + 300 * j, 260 + 300 * j, 0, 1200]
                    for j in range(max(0, min(per_page, n_sys - k * per_page)))
                ],
            }
            for k in range(2)
        ]
        pieces[pid] = {
            "title": f"Piece {pid.title()}",
            "composer": "",
            "sources": [],
            "fingerprint": pid,
            "pages": pages,
            "n_windows": n,
            "system_offsets": [sys_w * j for j in range(n_sys)],
            "strip_width": float(sys_w * n_sys),
            "warnings": [],
        }
    model = {"dir": model_dir, "sha256": "", "training": {}}
    write_index(
        out,
        {
            "format": FORMAT,
            "contract": contract.to_dict(),
            "model": model,
            "stride": stride,
            "pieces": pieces,
        },
    )
    return out


def unit_rows(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
