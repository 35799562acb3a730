"""A fuzzed set of corrupt page files (seeded byte flips, truncations, junk headers of real PNG and
PDF pages) in a library build beside a good piece: every corrupt file is rejected with a message
naming it, the good piece still builds, no traceback (randomly initialised model; plumbing only)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np

from scoreid.library import Library


def corrupt_variants(data: bytes, seed: int) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    b = np.frombuffer(data, np.uint8)
    flipped = b.copy()
    idx = rng.integers(16, len(b), max(8, len(b) // 200))
    flipped[idx] = rng.integers(0, 256, len(idx), dtype=np.uint8)
    return {
        "truncated-head": data[: len(data) // 50],
        "truncated-half": data[: len(data) // 2],
        "flipped": flipped.tobytes(),
        "header-only": data[:16],
        "zero-bytes": b"",
        "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "junk-header": rng.integers(0, 256, 64, dtype=np.uint8).tobytes() + data[64:],
    }


def test_corrupt_pdfs_and_images_are_rejected_and_the_rest_builds(tmp_path, sheets_dir, random_model):
    src = tmp_path / "sheets"
    src.mkdir()
    shutil.copytree(sheets_dir / "schoenberg-19-2", src / "good")
    png = next((sheets_dir / "schoenberg-19-2").glob("*.png")).read_bytes()
    pdf = next((sheets_dir / "chopin-mazurka-6-2").glob("*.pdf")).read_bytes()
    bad: list[str] = []
    for kind, data, seed in (("png", png, 1), ("pdf", pdf, 2)):
        for name, blob in corrupt_variants(data, seed).items():
            d = src / f"{kind}-{name}"
            d.mkdir()
            (d / f"page.{kind}").write_bytes(blob)
            bad.append(d.name)
    lib = tmp_path / "lib"
    res = subprocess.run(
        [sys.executable, "-m", "cli", "library", "build", src, "--out", lib, "--model", random_model],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    built = Library.open(lib).piece_ids
    assert "good" in built
    hopeless = {
        f"{k}-{n}" for k in ("png", "pdf") for n in ("zero-bytes", "random", "header-only", "truncated-head")
    }
    assert not hopeless & set(built)
    for pid in bad:
        if (
            pid in built
        ):  # a flip that left the file readable and musical is fine; it must then be a real piece
            continue
        lines = [
            ln
            for ln in res.stderr.splitlines()
            if f"{pid}/page." in ln or f"{pid}:" in ln or f"piece {pid}" in ln
        ]
        assert lines, f"{pid}: rejected without a message naming it:\n{res.stderr}"
