"""Export a fine-tuned network to a model directory that :func:`scoreid.inference.load_model` reads.

Writes into ``out_dir``:

- ``model.pt``: the torch checkpoint (:func:`scoreid.models.save_checkpoint`);
- ``audio.onnx`` / ``sheet.onnx``: each encoder pathway, eval mode, opset ``trainer.onnx_export.OPSET`` (>= 17),
  dynamic batch axis, input ``spec`` / ``image``, output ``embedding``;
- with TensorRT importable: ``audio.fp16.onnx`` / ``sheet.fp16.onnx`` (the same graphs in half
  precision with float32 inputs/outputs, because TensorRT 11 builds strongly typed networks) and
  the plans ``{audio,sheet}.{fp16,fp32}.plan``; without it, a message says what to install;
- with ``int8_calibration`` (real spectrogram excerpts): ``audio.int8.onnx``, the audio encoder
  statically quantised by ONNX Runtime (QDQ, per-channel weights in 7 bits of int8 —
  ``reduce_range`` —, uint8 activations calibrated on those excerpts) for the CPU serving path
  (``load_model(..., precision="int8")``). The 7-bit weights make the result independent of the
  CPU: without them ONNX Runtime's U8S8 kernels on AVX2 CPUs without VNNI (AMD EPYC, most
  laptops) sum pairs of u8 x s8 products in saturating int16 (``vpmaddubsw``) and the embeddings
  fall apart (cosine 0.38 to fp32, measured), while VNNI CPUs compute in int32; with weights in
  [-64, 63] a pair can no longer overflow, so both kernel families give bit-identical embeddings
  at the VNNI speed (tested under an emulated AVX2 CPU; BENCHMARKS.md "int8 on every x86-64
  CPU"). U8U8 is also exact but runs at fp32 speed, S8S8 saturates like U8S8;
  its embeddings are compared with torch's by cosine similarity and it is kept only when the mean
  is >= ``int8_min_cos`` (default ``INT8_MIN_COS``; otherwise left out with a message);
  the retrieval cost of the quantisation is measured by ``trainer/run.py eval --precision int8``;
- ``audio.{stem,edge,head}.onnx`` (and their int8 variants with ``int8_calibration``): the
  incremental audio encoder (:mod:`trainer.export_incremental`, :mod:`scoreid.incremental`);
- ``manifest.json``: format, feature contract, files, inputs/output, training info (with
  ``architecture``, the network's config: audio frames, dimension, audio filters and stem).

Every ONNX file is checked against torch on the parity inputs (real corpus excerpts when given):
the max abs difference is printed and must be <= ``PARITY_TOL`` (1e-4); TensorRT plans are
checked too (fp32 <= 1e-3, fp16 <= 2e-2 on L2-normalised outputs).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from scoreid import contract as C
from scoreid.inference import (
    AUDIO_INPUT,
    MANIFEST,
    SHEET_INPUT,
    make_manifest,
)
from scoreid.models import AudioEmbedder, CrossModalNet, SheetEmbedder, save_checkpoint
from scoreid.tensorrt_backend import BackendUnavailable, TrtEncoder, build_plan, import_tensorrt
from scoreid.tensors import audio_input_shape, sheet_input_shape
from trainer.export_incremental import export_incremental
from trainer.onnx_export import (
    INT8_MIN_COS,
    PARITY_TOL,
    ParityError,
    cosine_stats,
    export_onnx,
    quantize_int8,
)

TRT_TOL = {"fp32": 1e-3, "fp16": 2e-2}
TRT_MAX_BATCH = 256
TRT_OPT_BATCH = 64


class _Half(nn.Module):
    """Runs a module in float16 with float32 inputs and outputs (for the fp16 TensorRT graph)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(module).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.half()).float()


def onnx_max_diff(path: Path, input_name: str, module: nn.Module, x: np.ndarray) -> float:
    """Max abs difference between onnxruntime and torch outputs on ``x``."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {input_name: x})[0]
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    return float(np.abs(got - ref).max())


def mean_cosine(path: Path, input_name: str, module: nn.Module, x: np.ndarray) -> tuple[float, float]:
    """Mean and min cosine similarity between onnxruntime's and torch's embeddings of ``x``."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {input_name: x})[0]
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    return cosine_stats(got, ref)


def random_inputs(frames: int, n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in parity inputs in the input ranges (spectrogram-like >= 0; sheet in [0, 1])."""
    rng = np.random.default_rng(seed)
    audio = np.abs(rng.normal(0.0, 0.5, (n, *audio_input_shape(frames)))).astype(np.float32)
    sheet = (rng.random((n, *sheet_input_shape())) < 0.1).astype(np.float32)
    return audio, sheet


def export_model(
    net: CrossModalNet,
    out_dir: str | Path,
    training: dict[str, Any],
    parity_audio: np.ndarray | None = None,
    parity_sheet: np.ndarray | None = None,
    tensorrt: bool = True,
    log: Callable[[str], None] = print,
    trt_device: str = "cuda",
    int8_calibration: np.ndarray | None = None,
    int8_min_cos: float = INT8_MIN_COS,
    incremental: bool = True,
) -> dict[str, Any]:
    """Write the model directory; returns the manifest (raises :class:`ParityError` on mismatch).

    ``incremental``: also write the incremental audio encoder's graphs (:mod:`trainer.export_incremental`).
    ``trt_device`` is where the TensorRT parity check runs ("cuda"; tests that mock the GPU pass
    "cpu" with a fake ``tensorrt`` module).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(net).cpu().eval()
    frames = net.audio_frames
    contract = C.with_audio_window(frames, net.audio_lead)
    real = parity_audio is not None and parity_sheet is not None
    if parity_audio is None or parity_sheet is None:
        parity_audio, parity_sheet = random_inputs(frames)
    parity_audio = np.ascontiguousarray(parity_audio, np.float32)
    parity_sheet = np.ascontiguousarray(parity_sheet, np.float32)
    what = "real corpus inputs" if real else "synthetic inputs (no corpus given)"

    files: dict[str, str] = {"torch": "model.pt"}
    save_checkpoint(net, out / "model.pt")
    paths: dict[str, tuple[nn.Module, str, tuple[int, ...], np.ndarray]] = {
        "audio": (AudioEmbedder(net).eval(), AUDIO_INPUT, audio_input_shape(frames), parity_audio),
        "sheet": (SheetEmbedder(net).eval(), SHEET_INPUT, sheet_input_shape(), parity_sheet),
    }
    parity: dict[str, float] = {}
    for mod, (module, name, shape, x) in paths.items():
        path = export_onnx(module, torch.zeros((2, *shape)), out / f"{mod}.onnx", name)
        files[f"{mod}_onnx"] = path.name
        diff = onnx_max_diff(path, name, module, x)
        parity[f"{mod}_onnx"] = diff
        log(
            f"parity {mod}.onnx vs torch: max abs diff {diff:.3g} over {len(x)} {what} (tolerance {PARITY_TOL:g})"
        )
        if not diff <= PARITY_TOL:
            raise ParityError(f"{mod}.onnx differs from torch by {diff:.3g} > {PARITY_TOL:g}")

    if int8_calibration is not None and len(int8_calibration):
        module, name, _shape, _x = paths["audio"]
        calib = np.ascontiguousarray(int8_calibration, np.float32)
        q = quantize_int8(out / "audio.onnx", out / "audio.int8.onnx", name, calib)
        mean, low = mean_cosine(q, name, module, parity_audio)
        parity["audio_onnx_int8_mean_cos"] = mean
        parity["audio_onnx_int8_min_cos"] = low
        log(
            f"int8 {q.name} vs torch: cosine mean {mean:.4f}, min {low:.4f} over {len(parity_audio)} {what} "
            f"(calibrated on {len(calib)} excerpts; kept when the mean is >= {int8_min_cos})"
        )
        if mean >= int8_min_cos:
            files["audio_onnx_int8"] = q.name
        else:  # the fp32 model is what matters: an inaccurate int8 one is left out, not fatal
            q.unlink()
            log(f"int8 {q.name} left out: mean cosine {mean:.4f} < {int8_min_cos}")

    if incremental:  # the incremental audio encoder's graphs (scoreid.incremental)
        inc_files, inc_parity = export_incremental(
            net, out, parity_audio, int8_calibration, log, int8_min_cos
        )
        files.update(inc_files)
        parity.update(inc_parity)

    if tensorrt:
        try:
            import_tensorrt()
            if trt_device.startswith("cuda") and not torch.cuda.is_available():
                raise BackendUnavailable("no CUDA device is available to build TensorRT plans")
        except BackendUnavailable as e:
            log(f"TensorRT plans skipped: {e}")
        else:
            for mod, (module, name, shape, x) in paths.items():
                half = export_onnx(_Half(module), torch.zeros((2, *shape)), out / f"{mod}.fp16.onnx", name)
                files[f"{mod}_onnx_fp16"] = half.name
                for prec, src in (("fp32", out / f"{mod}.onnx"), ("fp16", half)):
                    plan = build_plan(
                        src, out / f"{mod}.{prec}.plan", name, shape, TRT_MAX_BATCH, TRT_OPT_BATCH
                    )
                    files[f"{mod}_trt_{prec}"] = plan.name
                    with torch.inference_mode():
                        ref = module(torch.from_numpy(x)).numpy()
                    diff = float(np.abs(TrtEncoder(plan, device=trt_device)(x) - ref).max())
                    parity[f"{mod}_trt_{prec}"] = diff
                    log(f"parity {plan.name} vs torch: max abs diff {diff:.3g} (tolerance {TRT_TOL[prec]:g})")
                    if not diff <= TRT_TOL[prec]:
                        raise ParityError(f"{plan.name} differs from torch by {diff:.3g} > {TRT_TOL[prec]:g}")
    else:
        log("TensorRT plans skipped (--no-tensorrt)")

    info = dict(training)
    info["architecture"] = net.config  # the audio encoder's filters and stem (a distilled student's)
    info["parity_max_abs_diff"] = parity
    info["parity_inputs"] = what
    manifest = make_manifest(contract, files, info, sheet_space=net.sheet_space_digest())
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {out / MANIFEST} ({', '.join(sorted(files.values()))})")
    return manifest
