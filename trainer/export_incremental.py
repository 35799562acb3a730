"""Export the incremental audio encoder's three graphs beside a model's ``audio.onnx``.

:mod:`scoreid.models.split` cuts the audio pathway into a stem that runs on a stream and a head
that runs per window; :mod:`scoreid.incremental` runs them. This writes, into a model directory:

- ``audio.stem.onnx``: the stem without time padding (input ``spec`` (batch, 1, 92, frames), any even
  number of frames >= 14), the columns a stream computes once;
- ``audio.edge.onnx``: the stem with the trained padding, run on a window's first and last 12 frames;
- ``audio.head.onnx``: a window's 42 stem columns (input ``columns``) -> its embedding;
- with ``int8_calibration``: ``audio.{stem,edge,head}.int8.onnx``, each statically quantised like
  ``audio.int8.onnx`` (:func:`trainer.onnx_export.quantize_int8`): the stems on the calibration
  excerpts, the head on their stem columns.

Parity is checked on whole windows assembled the incremental way (edges + valid interior, in ONNX
Runtime) against torch's ``embed_audio``: fp32 max abs difference
<= ``PARITY_TOL``, int8 mean cosine >= ``INT8_MIN_COS`` (else the int8 graphs are left out, like
``audio.int8.onnx``). ``add_incremental`` adds them to an already exported model directory
(``trainer/run.py export-incremental``) and records them in its manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from scoreid.incremental import COLUMNS_INPUT, EDGE_FRAMES, INCREMENTAL_FILES, assemble_columns, manifest_key
from scoreid.inference import AUDIO_INPUT, MANIFEST, read_manifest
from scoreid.models import AudioEmbedder, CrossModalNet, load_checkpoint
from scoreid.models.split import AudioHead, AudioStem, splittable
from trainer.onnx_export import (
    INT8_MIN_COS,
    PARITY_TOL,
    ParityError,
    cosine_stats,
    export_onnx,
    quantize_int8,
)

Runner = Callable[[np.ndarray], np.ndarray]


def _session(path: Path) -> Runner:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]


def _columns(stem: Runner, edge: Runner, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """The head's input for whole windows ``x``: edges from the padded stem, the valid interior."""
    return np.concatenate(
        [
            assemble_columns(edge(w[..., :EDGE_FRAMES]), stem(w), edge(w[..., -EDGE_FRAMES:]))
            for w in (x[i : i + batch] for i in range(0, len(x), batch))
        ]
    )


def _windows_incremental(files: dict[str, Path], x: np.ndarray) -> np.ndarray:
    """Embeddings of whole windows ``x`` through the three graphs (edges + valid interior + head)."""
    stem, edge, head = (_session(files[k]) for k in ("stem", "edge", "head"))
    return np.asarray(head(_columns(stem, edge, x)), np.float32)


def export_incremental(
    net: CrossModalNet,
    out: Path,
    parity_audio: np.ndarray,
    int8_calibration: np.ndarray | None = None,
    log: Callable[[str], None] = print,
    int8_min_cos: float = INT8_MIN_COS,
) -> tuple[dict[str, str], dict[str, float]]:
    """Write the graphs into ``out``; returns (manifest ``files`` entries, parity numbers).
    Nothing is written for a network :func:`~scoreid.models.split.splittable` rejects."""
    if not splittable(net):
        log("incremental audio graphs skipped: this audio encoder cannot be cut (stem 'full', > 2 blocks)")
        return {}, {}
    net = net.cpu().eval()
    frames = net.audio_frames
    x = np.ascontiguousarray(parity_audio, np.float32)
    modules = {
        "stem": AudioStem(net, valid=True),
        "edge": AudioStem(net, valid=False),
        "head": AudioHead(net),
    }
    with torch.inference_mode():
        cols = modules["edge"](torch.zeros((2, 1, x.shape[2], frames)))
    samples = {
        "stem": torch.zeros((2, 1, x.shape[2], frames)),
        "edge": torch.zeros((2, 1, x.shape[2], EDGE_FRAMES)),
        "head": torch.zeros(cols.shape),
    }
    paths: dict[str, Path] = {}
    for part, module in modules.items():
        name = COLUMNS_INPUT if part == "head" else AUDIO_INPUT
        paths[part] = export_onnx(
            module, samples[part], out / INCREMENTAL_FILES[part][0], name, part != "head"
        )
    files = {manifest_key(part): p.name for part, p in paths.items()}
    with torch.inference_mode():
        ref = AudioEmbedder(net).eval()(torch.from_numpy(x)).numpy()
    diff = float(np.abs(_windows_incremental(paths, x) - ref).max())
    parity = {"audio_incremental_onnx": diff}
    log(
        f"parity incremental audio (stem + edges + head) vs torch: max abs diff {diff:.3g} (tolerance {PARITY_TOL:g})"
    )
    if not diff <= PARITY_TOL:
        raise ParityError(f"the incremental audio graphs differ from torch by {diff:.3g} > {PARITY_TOL:g}")

    if int8_calibration is not None and len(int8_calibration):
        calib = np.ascontiguousarray(int8_calibration, np.float32)
        head_calib = _columns(_session(paths["stem"]), _session(paths["edge"]), calib)
        edge_calib = np.concatenate([calib[..., :EDGE_FRAMES], calib[..., -EDGE_FRAMES:]])
        inputs = {
            "stem": (AUDIO_INPUT, calib),
            "edge": (AUDIO_INPUT, edge_calib),
            "head": (COLUMNS_INPUT, head_calib),
        }
        q = {
            part: quantize_int8(paths[part], out / INCREMENTAL_FILES[part][1], name, data)
            for part, (name, data) in inputs.items()
        }
        got = _windows_incremental(q, x)
        mean, low = cosine_stats(got, ref)
        parity["audio_incremental_int8_mean_cos"] = mean
        parity["audio_incremental_int8_min_cos"] = low
        log(
            f"int8 incremental audio vs torch: cosine mean {mean:.4f}, min {low:.4f} (kept when the mean is >= {int8_min_cos})"
        )
        if mean >= int8_min_cos:
            files.update({manifest_key(part, int8=True): p.name for part, p in q.items()})
        else:
            for p in q.values():
                p.unlink()
            log(f"int8 incremental audio graphs left out: mean cosine {mean:.4f} < {int8_min_cos}")
    return files, parity


def add_incremental(
    model_dir: Path,
    parity_audio: np.ndarray,
    int8_calibration: np.ndarray | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Add the incremental graphs to an exported model directory (its ``model.pt``); the manifest
    gets their files and parity numbers. Returns the new manifest."""
    manifest = read_manifest(model_dir)
    net = load_checkpoint(model_dir / manifest["files"]["torch"])
    files, parity = export_incremental(net, model_dir, parity_audio, int8_calibration, log)
    for part in INCREMENTAL_FILES:  # an earlier export's entries (its int8 ones may be left out now)
        for int8 in (False, True):
            manifest["files"].pop(manifest_key(part, int8), None)
    manifest["files"].update(files)
    manifest.setdefault("training", {}).setdefault("parity_max_abs_diff", {}).update(parity)
    (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
