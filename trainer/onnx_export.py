"""ONNX writing shared by the exports (:mod:`trainer.export`, :mod:`trainer.export_incremental`):
the graph export with its dynamic axes, static int8 quantisation, and the parity error."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from scoreid.inference import OUTPUT

OPSET = 17
PARITY_TOL = 1e-4  #: max abs difference of an fp32 ONNX graph's embeddings from torch's
INT8_MIN_COS = 0.98  #: mean cosine similarity of int8 vs torch embeddings on the calibration check


class ParityError(RuntimeError):
    """An exported engine disagrees with torch beyond the tolerance."""


def export_onnx(
    module: nn.Module, sample: torch.Tensor, path: Path, input_name: str, time_axis: bool = False
) -> Path:
    """Export ``module`` (eval) to ONNX with a dynamic batch axis (and, with ``time_axis``, a
    dynamic last axis of input and output: the incremental stems); validates the file."""
    axes: dict[str, dict[int, str]] = {input_name: {0: "batch"}, OUTPUT: {0: "batch"}}
    if time_axis:
        axes[input_name][3] = "frames"
        axes[OUTPUT][3] = "columns"
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            input_names=[input_name],
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def quantize_int8(src: Path, dst: Path, input_name: str, calibration: np.ndarray, batch: int = 32) -> Path:
    """Static int8 quantisation of an ONNX encoder with ONNX Runtime's tooling (QDQ format,
    per-channel 7-bit int8 weights (``reduce_range``: exact on AVX2 and VNNI kernels alike),
    uint8 activations, min/max calibration on ``calibration``)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            x = np.ascontiguousarray(calibration, np.float32)
            self.batches = iter([{input_name: x[i : i + batch]} for i in range(0, len(x), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(
            str(pre),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    onnx.checker.check_model(onnx.load(str(dst)))
    return dst


def cosine_stats(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Mean and min cosine similarity between two batches of embeddings, row by row."""
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    return float(cos.mean()), float(cos.min())
