"""Load an exported model directory and embed audio excerpts and sheet windows with it.

``load_model(model_dir, backend="onnx" | "torch" | "tensorrt") -> Encoders`` reads
``manifest.json`` (written by ``trainer/run.py export``), refuses a model whose feature contract
differs from this code's (:class:`~scoreid.contract.ContractError` naming the fields), and runs:

- ``onnx``: ``audio.onnx`` / ``sheet.onnx`` with onnxruntime (CPU, or CUDA when available and
  ``device="cuda"``); ``precision="int8"`` runs the audio encoder from ``audio.int8.onnx`` (static
  int8 quantisation written by ``trainer/run.py export``; ~1.7x the windows/s on AVX2 CPUs, see
  BENCHMARKS.md) and the sheet encoder in fp32;
- ``torch``: ``model.pt`` with the shared definitions in :mod:`scoreid.models`, on the CPU or a
  CUDA device (``device="cuda"``), in fp32 or (CUDA only) ``precision="fp16"``: the GPU path that
  needs no install beyond PyTorch;
- ``tensorrt``: ``audio.fp16.plan`` / ``sheet.fp16.plan`` (or ``fp32`` with
  ``precision="fp32"``) via :mod:`scoreid.tensorrt_backend`; without TensorRT or a GPU a
  :class:`~scoreid.tensorrt_backend.BackendUnavailable` says what to install.

Inputs: audio float32 (B, 1, 92, F) with F = the contract's audio window (84 by default);
sheet float32 (B, 1, 80, 100) in [0, 1], ink = 1 (see :mod:`scoreid.sheet.strip`). Outputs:
float32 (B, 32), L2-normalised. A wrongly shaped input raises ``ContractError``.

With ``incremental=True`` (the default) and a model that has them (``audio.{stem,edge,head}.onnx``,
int8 variants for ``precision="int8"``; :mod:`trainer.export_incremental`), the onnx backend also
runs the incremental audio encoder (:mod:`scoreid.incremental`): ``Encoders.embed_stream`` embeds
the windows of streams, computing the CNN's first layers once per stream position.

A model may carry a hub bank (``manifest["hub"]``: audio embeddings of training windows; see
:mod:`scoreid.search.hubness`): ``Encoders.hub`` reads it, and libraries built with the model score
their windows' hubness against it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.contract import Contract, ContractError
from scoreid.errors import UserError
from scoreid.incremental import COLUMNS_INPUT, INCREMENTAL_FILES, AudioState, IncrementalAudio, manifest_key
from scoreid.tensorrt_backend import BackendUnavailable
from scoreid.tensors import audio_input_shape, sheet_input_shape

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "scoreid-model/1"
AUDIO_INPUT = "spec"
SHEET_INPUT = "image"
OUTPUT = "embedding"
BACKENDS = ("onnx", "torch", "tensorrt")
#: rows per forward pass in the onnx and torch backends (bounds memory for huge batches)
CHUNK = 512

Runner = Callable[[np.ndarray], np.ndarray]


def git_commit(repo: Path | None = None) -> str:
    """The current git commit of the repository (``"unknown"`` outside git)."""
    try:
        cwd = repo or Path(__file__).resolve().parents[1]
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def make_manifest(
    contract: Contract, files: dict[str, str], training: dict[str, Any], sheet_space: str | None = None
) -> dict[str, Any]:
    """The manifest dict of the shared ``scoreid-model/1`` format (README "The feature contract");
    ``sheet_space``: the network's :meth:`~scoreid.models.CrossModalNet.sheet_space_digest`."""
    frames = contract.audio_window_frames
    extra = {} if sheet_space is None else {"sheet_space": sheet_space}
    return {
        "format": MANIFEST_FORMAT,
        "contract": contract.to_dict(),
        "files": dict(files),
        "inputs": {
            "audio": {"name": AUDIO_INPUT, "shape": ["batch", *audio_input_shape(frames)]},
            "sheet": {"name": SHEET_INPUT, "shape": ["batch", *sheet_input_shape()]},
        },
        "output": {"name": OUTPUT, "dim": contract.embed_dim},
        "training": dict(training),
        **extra,
    }


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """Parse and validate ``model_dir/manifest.json`` (UserError when missing or malformed)."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{model_dir}: not a model directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(
            f"{path}: unknown model format {manifest.get('format') if isinstance(manifest, dict) else None!r}, expected {MANIFEST_FORMAT!r}"
        )
    for key in ("contract", "files"):
        if not isinstance(manifest.get(key), dict):
            raise UserError(f"{path}: manifest has no {key!r} object")
    return manifest


def _check_batch(x: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != shape:
        raise ContractError(
            f"{what} input must have shape (batch, {', '.join(map(str, shape))}), got {arr.shape}"
        )
    return np.ascontiguousarray(arr)


class Encoders:
    """The two encoders of one exported model, on one backend."""

    def __init__(
        self,
        model_dir: Path,
        manifest: dict[str, Any],
        contract: Contract,
        backend: str,
        audio: Runner,
        sheet: Runner,
        incremental: IncrementalAudio | None = None,
    ):
        self.model_dir = model_dir
        self.manifest = manifest
        self.contract = contract
        self.backend = backend
        self._audio = audio
        self._sheet = sheet
        self.audio_shape = audio_input_shape(contract.audio_window_frames)
        self.sheet_shape = sheet_input_shape()
        self.dim = contract.embed_dim
        self.incremental = incremental

    @property
    def audio_frames(self) -> int:
        return self.contract.audio_window_frames

    def _run(self, runner: Runner, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        out = runner(x)
        return np.asarray(out, dtype=np.float32).reshape(x.shape[0], self.dim)

    def embed_audio(self, x: Any) -> np.ndarray:
        """float32 (B, 1, 92, F) spectrogram excerpts -> (B, 32) L2-normalised embeddings."""
        return self._run(self._audio, _check_batch(x, self.audio_shape, "audio"))

    def embed_stream(self, x: Any, ends: Any, states: Any) -> np.ndarray:
        """Windows of streams: ``x`` as :meth:`embed_audio`, ``ends[i]`` the stream frame after window
        ``i``, ``states[i]`` its stream's :class:`~scoreid.incremental.AudioState` (from
        :meth:`new_stream`). The incremental encoder when the model has it, else :meth:`embed_audio`."""
        arr = _check_batch(x, self.audio_shape, "audio")
        if self.incremental is None or arr.shape[0] == 0:
            return self._run(self._audio, arr)
        return self.incremental.embed(arr, list(ends), list(states)).reshape(arr.shape[0], self.dim)

    def new_stream(self) -> AudioState | None:
        """A stream's state for :meth:`embed_stream` (None when the encoder is not incremental)."""
        return AudioState() if self.incremental is not None else None

    def embed_sheet(self, x: Any) -> np.ndarray:
        """float32 (B, 1, 80, 100) sheet windows (ink = 1) -> (B, 32) L2-normalised embeddings."""
        return self._run(self._sheet, _check_batch(x, self.sheet_shape, "sheet"))

    @cached_property
    def hub(self) -> HubBank | None:
        """The model's hub bank (:mod:`scoreid.search.hubness`; ``manifest["hub"]``, written by
        ``trainer/run.py hub-bank``), read once; None when the model has none."""
        return read_hub_bank(self.model_dir, self.manifest, self.dim)


@dataclass(frozen=True)
class HubBank:
    """Audio embeddings of training windows, for the hub correction of sheet windows: ``bank``
    (n, dim) float32, the ``k`` neighbours a window's hubness averages over, the ``weight`` a library
    built with this model gives it, and the bank's ``sha256``."""

    bank: np.ndarray
    k: int
    weight: float
    sha256: str

    def library_entry(self) -> dict[str, Any]:
        """What a library records about the correction its rows were scored with."""
        return {"bank": self.sha256, "k": self.k, "weight": self.weight}


def read_hub_bank(model_dir: Path, manifest: dict[str, Any], dim: int) -> HubBank | None:
    """The manifest's ``hub`` entry and its bank file, checked (UserError when it is malformed)."""
    from scoreid.search.hubness import bank_sha

    entry = manifest.get("hub")
    if entry is None:
        return None
    where = f"{model_dir}/{MANIFEST}"
    try:
        name, k, weight = str(entry["bank"]), int(entry["k"]), float(entry["weight"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{where}: malformed 'hub' entry ({e})") from None
    path = Path(model_dir) / name
    if Path(name).name != name or not path.is_file():
        raise UserError(f"{where}: hub bank {name!r} is missing")
    try:
        bank = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable hub bank ({e})") from None
    if bank.ndim != 2 or bank.shape[1] != dim or not len(bank) or not np.all(np.isfinite(bank)):
        raise UserError(f"{path}: hub bank must be (n, {dim}) finite numbers, got {bank.shape}")
    if k < 1 or not (0.0 <= weight <= 10.0):
        raise UserError(f"{where}: hub k must be >= 1 and weight in [0, 10], got {k}, {weight}")
    bank = np.ascontiguousarray(bank, np.float32)
    sha = bank_sha(bank)
    if entry.get("sha256") not in (None, sha):
        raise UserError(f"{path}: hub bank does not match the manifest's sha256; export it again")
    return HubBank(bank, k, weight, sha)


def _file(model_dir: Path, manifest: dict[str, Any], key: str) -> Path:
    name = manifest["files"].get(key)
    if not name:
        raise UserError(f"{model_dir}: the manifest lists no {key!r} file")
    path = model_dir / name
    if not path.is_file():
        raise UserError(f"{model_dir}: {name} is listed in the manifest but missing")
    return path


def _chunked(fn: Runner) -> Runner:
    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([fn(x[i : i + CHUNK]) for i in range(0, x.shape[0], CHUNK)])

    return run


def ort_session_options(threads: int | None = None) -> Any:
    """ONNX Runtime session options for these encoders (measured by ``bench/encoder.py``).

    Full graph optimisation (BatchNorm folded into the convolutions, NCHWc convolution kernels),
    sequential execution (the graph is a chain: no inter-op parallelism to gain), memory-pattern
    planning, ``threads`` intra-op threads (None or 0: one per core) and no spin-waiting: the
    encoders share a small machine with the other services, and spinning worker threads burn
    the cores those need (measured in BENCHMARKS.md "Encoder").
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_mem_pattern = True
    opts.enable_cpu_mem_arena = True
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def _onnx_runners(
    model_dir: Path,
    manifest: dict[str, Any],
    device: str,
    threads: int | None = None,
    precision: str = "fp32",
    incremental: bool = True,
) -> tuple[Runner, Runner, IncrementalAudio | None]:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(
                "onnxruntime has no CUDA provider here; install onnxruntime-gpu or use device 'cpu'"
            )
        providers.insert(0, "CUDAExecutionProvider")

    def runner(key: str, name: str) -> Runner:
        opts = ort_session_options(threads)
        sess = ort.InferenceSession(str(_file(model_dir, manifest, key)), opts, providers=providers)
        return _chunked(lambda x: sess.run(None, {name: x})[0])

    if precision not in ("fp32", "int8"):
        raise UserError(f"ONNX precision must be fp32 or int8, got {precision!r}")
    if precision == "int8" and not manifest["files"].get("audio_onnx_int8"):
        raise UserError(
            f"{model_dir}: no int8 audio model (export it with trainer/run.py export --int8-calibration N)"
        )
    audio_key = "audio_onnx_int8" if precision == "int8" else "audio_onnx"
    audio = runner(audio_key, AUDIO_INPUT)
    parts = {p: manifest_key(p, precision == "int8") for p in INCREMENTAL_FILES}
    inc = None
    if incremental and all(manifest["files"].get(k) for k in parts.values()):
        stem, edge, head = (
            runner(parts[p], COLUMNS_INPUT if p == "head" else AUDIO_INPUT) for p in ("stem", "edge", "head")
        )
        inc = IncrementalAudio(stem, edge, head, audio, int(manifest["contract"]["audio_window_frames"]))
    return audio, runner("sheet_onnx", SHEET_INPUT), inc


def _torch_runners(
    model_dir: Path, manifest: dict[str, Any], device: str, precision: str
) -> tuple[Runner, Runner]:
    import torch

    from scoreid.models import load_checkpoint

    if precision not in ("fp32", "fp16"):
        raise UserError(f"torch precision must be fp32 or fp16, got {precision!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA device is available for the torch backend; use device 'cpu'")
    if precision == "fp16" and not device.startswith("cuda"):
        raise UserError("torch fp16 runs on a CUDA device only (device 'cuda')")
    net = load_checkpoint(_file(model_dir, manifest, "torch"), map_location=device)
    dtype = torch.float16 if precision == "fp16" else torch.float32
    net = net.to(dtype)
    dev = torch.device(device)

    def runner(fn: Callable[[Any], Any]) -> Runner:
        @torch.inference_mode()
        def run(x: np.ndarray) -> np.ndarray:
            return fn(torch.from_numpy(x).to(dev, dtype)).float().cpu().numpy()

        return _chunked(run)

    return runner(net.embed_audio), runner(net.embed_sheet)


def _tensorrt_runners(
    model_dir: Path, manifest: dict[str, Any], device: str, precision: str
) -> tuple[Runner, Runner]:
    from scoreid.tensorrt_backend import TrtEncoder, import_tensorrt

    import_tensorrt()  # clear message first when the package is missing
    if precision not in ("fp16", "fp32"):
        raise UserError(f"TensorRT precision must be fp16 or fp32, got {precision!r}")
    audio = TrtEncoder(_file(model_dir, manifest, f"audio_trt_{precision}"), device=device)
    sheet = TrtEncoder(_file(model_dir, manifest, f"sheet_trt_{precision}"), device=device)
    return audio, sheet


def load_model(
    model_dir: str | Path,
    backend: str = "onnx",
    *,
    device: str | None = None,
    precision: str | None = None,
    expected: Contract | None = None,
    threads: int | None = None,
    incremental: bool = True,
) -> Encoders:
    """Open an exported model directory on ``backend`` ("onnx", "torch" or "tensorrt").

    ``expected`` is the contract this code serves (default :data:`scoreid.contract.DEFAULT` with the
    model's own audio lead, any lead the contract allows); pass ``contract.with_audio_window(n)`` to
    serve a 42- or 168-frame model. ``device`` defaults
    to "cpu" for onnx/torch and "cuda" for tensorrt; ``precision`` picks the TensorRT plan
    ("fp16", the default, or "fp32"), the ONNX audio encoder ("fp32", the default, or "int8") or
    the torch weights' type ("fp32", the default, or "fp16" on a CUDA device).
    ``threads``: intra-op CPU threads of the onnx backend (None: one per core). ``incremental``:
    also load the incremental audio encoder when the model has it (onnx backend; see the module
    docstring).
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    mdir = Path(model_dir)
    manifest = read_manifest(mdir)
    try:
        contract = Contract.from_dict(manifest["contract"])
    except (TypeError, ValueError) as e:
        raise ContractError(f"{mdir}: manifest contract is malformed ({e})") from None
    if expected is None:  # any audio lead is served (the follower reads it from the contract)
        expected = C.with_audio_window(C.AUDIO_WINDOW_FRAMES, contract.audio_lead_frames)
    expected.check_compatible(contract, what=f"model {mdir}")
    inc = None
    if backend == "onnx":
        audio, sheet, inc = _onnx_runners(
            mdir, manifest, device or "cpu", threads, precision or "fp32", incremental
        )
    elif backend == "torch":
        audio, sheet = _torch_runners(mdir, manifest, device or "cpu", precision or "fp32")
    else:
        audio, sheet = _tensorrt_runners(mdir, manifest, device or "cuda", precision or "fp16")
    return Encoders(mdir, manifest, contract, backend, audio, sheet, inc)
