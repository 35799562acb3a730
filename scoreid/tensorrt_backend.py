"""TensorRT engines for the encoders: build a serialized plan from ONNX, and run one.

Uses the TensorRT Python API as documented (10.x and 11.x):

- build: ``trt.Builder`` -> ``create_network`` (strongly typed: precision comes from the ONNX
  graph, which is how TensorRT 11 requires fp16 to be expressed; the trainer exports a separate
  fp16 ONNX for the fp16 plan) -> ``trt.OnnxParser.parse`` -> builder config with a workspace
  limit and one optimisation profile covering the batch range -> ``build_serialized_network``.
- run: ``trt.Runtime.deserialize_cuda_engine`` -> ``create_execution_context`` -> per call
  ``set_input_shape``, ``set_tensor_address`` on torch CUDA tensors, ``execute_async_v3`` on the
  current torch CUDA stream (torch device buffers stand in for pycuda).

Plans are specific to the GPU model and TensorRT version that built them; ``load_model`` in
:mod:`scoreid.inference` reports a clear error when a plan cannot be deserialised here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from scoreid.errors import UserError

INSTALL_HINT = (
    "the TensorRT backend needs an NVIDIA GPU with CUDA, torch with CUDA, and TensorRT: "
    "`pip install 'scoreid[gpu]'` (tensorrt>=10, cuda-python>=12); "
    "or use backend 'onnx' (CPU) or 'torch'"
)
WORKSPACE_BYTES = 1 << 30


class BackendUnavailable(UserError):
    """The requested inference backend cannot run on this machine (missing package or GPU)."""


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or :class:`BackendUnavailable` saying what to install."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:
        raise BackendUnavailable(f"tensorrt is not importable ({e}); {INSTALL_HINT}") from None


def _logger(trt: ModuleType) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def _network_flags(trt: ModuleType) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_plan(
    onnx_path: str | Path,
    plan_path: str | Path,
    input_name: str,
    sample_shape: tuple[int, ...],
    max_batch: int = 256,
    opt_batch: int = 64,
) -> Path:
    """Build and write a serialized TensorRT engine for an ONNX encoder with a dynamic batch axis.

    ``sample_shape`` is the input shape without the batch axis, e.g. (1, 92, 84). The precision is
    the ONNX graph's (export an fp16 graph for an fp16 plan).
    """
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    opt_batch = max(1, min(opt_batch, max_batch))
    profile.set_shape(input_name, (1, *sample_shape), (opt_batch, *sample_shape), (max_batch, *sample_shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    out = Path(plan_path)
    out.write_bytes(bytes(plan))
    return out


class TrtEncoder:
    """Runs one serialized engine (input (B, ...) float32 -> output (B, 32) float32).

    ``device`` is a torch device string; it is "cuda" in production (tests with the GPU mocked
    may pass "cpu" together with a fake ``tensorrt`` module).
    """

    def __init__(self, plan_path: str | Path, device: str = "cuda"):
        trt = import_tensorrt()
        try:
            import torch
        except ImportError:
            raise BackendUnavailable(f"torch is not importable; {INSTALL_HINT}") from None
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"no CUDA device is available; {INSTALL_HINT}")
        self.torch = torch
        self.device = torch.device(device)
        self.trt = trt
        self.runtime = trt.Runtime(_logger(trt))
        self.engine = self.runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self.engine is None:
            raise BackendUnavailable(
                f"{plan_path}: TensorRT could not deserialise this plan (built for another GPU or "
                "TensorRT version?); rebuild it with `trainer/run.py export` on this machine"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{plan_path}: expected one input and one output, got {inputs} / {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        _, _, max_shape = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_batch = int(max_shape[0])
        self.out_dim = int(self.engine.get_tensor_shape(self.output_name)[-1])

    def _stream(self) -> int:
        if self.device.type == "cuda":
            return int(self.torch.cuda.current_stream(self.device).cuda_stream)
        return 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        outs = []
        for i in range(0, x.shape[0], self.max_batch):
            chunk = torch.from_numpy(np.ascontiguousarray(x[i : i + self.max_batch], np.float32))
            inp = chunk.to(self.device)
            out = torch.empty((inp.shape[0], self.out_dim), dtype=torch.float32, device=self.device)
            self.context.set_input_shape(self.input_name, tuple(inp.shape))
            self.context.set_tensor_address(self.input_name, int(inp.data_ptr()))
            self.context.set_tensor_address(self.output_name, int(out.data_ptr()))
            if not self.context.execute_async_v3(self._stream()):
                raise RuntimeError("TensorRT execution failed")
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
            outs.append(out.cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.out_dim), np.float32)
