"""Reading and writing the corpus on disk: ``index.json``, one ``.npz`` per piece, page PNGs.

Layout::

    DATA_DIR/index.json               {"version": 1, "pieces": {pid: {...}}, "splits": {...}, "build": {...}}
    DATA_DIR/pieces/<pid>.npz         arrays (below) + "meta" (a JSON string)
    DATA_DIR/pages/<pid>/<render>-p<NNN>.png
    DATA_DIR/audio/<pid>/<perf>.flac  only with ``corpus build --keep-audio``

Arrays in a piece file: ``note_onset_s`` float32 [N] and ``note_pitch`` int16 [N]; per render i
``r{i}.strip`` uint8 [160, W], ``r{i}.note_x`` float32 [N] (nan: not aligned), ``r{i}.note_y``
float32 [N] (notehead y on the strip; may lie outside 0..160), ``r{i}.note_system`` int16 [N],
``r{i}.note_page`` int16 [N], ``r{i}.note_page_xy`` float32 [N, 2] (notehead centre on its page),
``r{i}.system_offsets`` int32 [S], ``r{i}.system_boxes`` float32 [S, 5] (page, top, bottom, left,
right); per performance j ``p{j}.spec`` float16 [T, 92], ``p{j}.note_frame`` float32 [N] and
``p{j}.time_map`` float64 [2, K] (score seconds, performance seconds).

Files are written atomically (temporary file + rename) and deterministically (zip entries carry a
fixed timestamp), so the same inputs give byte-identical files.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from scoreid.errors import UserError

INDEX = "index.json"
SPLITS = ("train", "valid", "test", "pool")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


# ------------------------------------------------------------------------------ writing
log = logging.getLogger(__name__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz (readable by ``np.load``) with fixed zip timestamps: deterministic bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=6)
    return buf.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def flac_bytes(audio: np.ndarray) -> bytes:
    """Mono float audio at the contract rate as 16-bit FLAC."""
    import soundfile as sf

    from scoreid import contract as C

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), C.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def piece_path(data_dir: Path, pid: str) -> Path:
    return Path(data_dir) / "pieces" / f"{pid}.npz"


def page_path(data_dir: Path, pid: str, render: str, page: int) -> Path:
    return Path(data_dir) / "pages" / pid / f"{render}-p{page + 1:03d}.png"


def audio_path(data_dir: Path, pid: str, perf: str) -> Path:
    """Where ``--keep-audio`` puts a performance's waveform."""
    return Path(data_dir) / "audio" / pid / f"{perf}.flac"


def read_meta(path: Path) -> dict[str, Any]:
    """Only the metadata of a piece file (cheap: one zip member)."""
    with np.load(path, allow_pickle=False) as z:
        return dict(json.loads(str(z["meta"])))


# ------------------------------------------------------------------------------ reading
@dataclass
class Render:
    name: str
    font: str
    condition: str
    strip: np.ndarray
    note_x: np.ndarray
    note_y: np.ndarray
    note_system: np.ndarray
    note_page: np.ndarray
    note_page_xy: np.ndarray
    system_offsets: np.ndarray
    system_boxes: np.ndarray
    page_paths: list[Path]
    meta: dict[str, Any] = field(default_factory=dict)

    def page(self, i: int) -> np.ndarray:
        return np.asarray(Image.open(self.page_paths[i]).convert("L"), np.uint8)


@dataclass
class Performance:
    name: str
    soundfont: str
    condition: str
    tempo_factor: float
    spec: np.ndarray
    note_frame: np.ndarray
    time_map: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return float(self.meta.get("seconds", 0.0))


@dataclass
class Piece:
    id: str
    meta: dict[str, Any]
    note_onset_s: np.ndarray
    note_pitch: np.ndarray
    renders: list[Render]
    performances: list[Performance]

    def pairs(self, render_idx: int, perf_idx: int) -> np.ndarray:
        """Indices of the notes aligned both on the render's strip and in the performance."""
        r, p = self.renders[render_idx], self.performances[perf_idx]
        ok = np.isfinite(r.note_x) & np.isfinite(p.note_frame) & (p.note_frame < len(p.spec))
        return np.flatnonzero(ok)


class Corpus:
    """A built corpus directory (``trainer/run.py corpus build`` output)."""

    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir)
        idx = self.root / INDEX
        if not idx.is_file():
            raise UserError(f"{self.root}: not a corpus (no {INDEX}); build one with `corpus build`")
        try:
            self.index: dict[str, Any] = json.loads(idx.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{idx}: unreadable index ({e})") from e
        if self.index.get("version") != 1:
            raise UserError(f"{idx}: unsupported corpus version {self.index.get('version')!r}")

    @property
    def pieces(self) -> dict[str, dict[str, Any]]:
        return dict(self.index.get("pieces", {}))

    def ids(self, split: str | None = None) -> list[str]:
        """Piece ids of ``split`` (None: every piece). The ``train`` split never holds a work of the
        real-performance validation set (``trainer/realdev/corpus_matches.json``): the corpus build
        leaves them out, and a corpus built before that rule is filtered here, saying so once."""
        if split is None:
            return sorted(self.index.get("pieces", {}))
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
        ids = list(self.index.get("splits", {}).get(split, []))
        if split == "train":
            from trainer.realdev.matches import realdev_corpus_pids

            held = realdev_corpus_pids()
            dropped = [p for p in ids if p in held]
            if dropped and not getattr(self, "_warned", False):
                self._warned = True
                log.warning(
                    "%s: %d real-dev works left out of train (%s)",
                    self.root,
                    len(dropped),
                    ", ".join(dropped),
                )
            ids = [p for p in ids if p not in held]
        return ids

    def load(self, pid: str) -> Piece:
        path = piece_path(self.root, pid)
        if pid not in self.index.get("pieces", {}) or not path.is_file():
            raise UserError(f"{self.root}: no piece {pid!r}")
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        meta = json.loads(str(a.pop("meta")))
        renders = []
        for i, rm in enumerate(meta["renders"]):
            renders.append(
                Render(
                    name=rm["name"],
                    font=rm["font"],
                    condition=rm["condition"],
                    strip=a[f"r{i}.strip"],
                    note_x=a[f"r{i}.note_x"],
                    note_y=a[f"r{i}.note_y"],
                    note_system=a[f"r{i}.note_system"],
                    note_page=a[f"r{i}.note_page"],
                    note_page_xy=a[f"r{i}.note_page_xy"],
                    system_offsets=a[f"r{i}.system_offsets"],
                    system_boxes=a[f"r{i}.system_boxes"],
                    page_paths=[self.root / p for p in rm["pages"]],
                    meta=rm,
                )
            )
        perfs = []
        for j, pm in enumerate(meta["performances"]):
            perfs.append(
                Performance(
                    name=pm["name"],
                    soundfont=pm["soundfont"],
                    condition=pm["condition"],
                    tempo_factor=float(pm["tempo_factor"]),
                    spec=a[f"p{j}.spec"],
                    note_frame=a[f"p{j}.note_frame"],
                    time_map=a[f"p{j}.time_map"],
                    meta=pm,
                )
            )
        return Piece(pid, meta, a["note_onset_s"], a["note_pitch"], renders, perfs)
