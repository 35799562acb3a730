"""Checks on the files a command is asked to write, made before any work is done.

A path that is an existing folder, or that lacks the format's suffix (matplotlib and numpy would
silently append one and write somewhere else), is a user error with one clear line.
"""

from __future__ import annotations

from pathlib import Path

from scoreid.errors import UserError


def output_file(path: Path, suffix: str, option: str) -> Path:
    """``path`` as a file to write with ``suffix`` (e.g. ".png"); its parent folder is created."""
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name ending in {suffix}")
    if path.suffix.lower() != suffix:
        raise UserError(f"{option} {path}: give a file name ending in {suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create its folder ({e.strerror})") from None
    return path
