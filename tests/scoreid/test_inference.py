"""scoreid.inference: exported model directories on the onnx, torch and (GPU mocked) tensorrt backends."""

from __future__ import annotations

import ctypes
import hashlib
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from scoreid import contract as C
from scoreid.contract import ContractError
from scoreid.errors import UserError
from scoreid.inference import load_model
from scoreid.models import CrossModalNet
from scoreid.tensorrt_backend import BackendUnavailable
from scoreid.tensors import audio_input_shape
from trainer.export import export_model


def _trained_like_net(frames: int = 84) -> CrossModalNet:
    torch.manual_seed(0)
    net = CrossModalNet(audio_frames=frames).eval()
    with torch.no_grad():  # non-trivial CCA buffers
        a, s = torch.rand(64, 1, 92, frames), torch.rand(64, 1, 80, 100)
        net.cca.refit(net.pre_cca_audio(a), net.pre_cca_sheet(s))
    return net


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("model")
    export_model(_trained_like_net(), out, {"preset": "test", "seed": 0}, tensorrt=False, log=lambda s: None)
    return out


def _inputs(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.random((n, 1, 92, 84), np.float32), rng.random((n, 1, 80, 100), np.float32)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_backends_embed_like_the_network(model_dir, backend):
    enc = load_model(model_dir, backend=backend)
    net = _trained_like_net()
    a, s = _inputs()
    with torch.no_grad():
        ra = net.embed_audio(torch.from_numpy(a)).numpy()
        rs = net.embed_sheet(torch.from_numpy(s)).numpy()
    ea, es = enc.embed_audio(a), enc.embed_sheet(s)
    assert ea.dtype == np.float32 and ea.shape == (5, 32) and es.shape == (5, 32)
    assert np.abs(ea - ra).max() <= 1e-4 and np.abs(es - rs).max() <= 1e-4
    assert np.allclose(np.linalg.norm(ea, axis=1), 1, atol=1e-5)
    assert enc.contract == C.DEFAULT and enc.manifest["format"] == "scoreid-model/1"
    assert enc.embed_audio(np.zeros((0, 1, 92, 84), np.float32)).shape == (0, 32)


def test_manifest_follows_the_shared_layout(model_dir):
    m = json.loads((model_dir / "manifest.json").read_text())
    assert m["contract"] == C.DEFAULT.to_dict()
    assert m["files"] == {
        "torch": "model.pt",
        "audio_onnx": "audio.onnx",
        "sheet_onnx": "sheet.onnx",
        **{f"audio_{p}_onnx": f"audio.{p}.onnx" for p in ("stem", "edge", "head")},  # the incremental encoder
    }
    assert m["inputs"]["audio"] == {"name": "spec", "shape": ["batch", 1, 92, 84]}
    assert m["inputs"]["sheet"] == {"name": "image", "shape": ["batch", 1, 80, 100]}
    assert m["output"] == {"name": "embedding", "dim": 32}
    assert m["training"]["preset"] == "test" and m["training"]["parity_max_abs_diff"]["audio_onnx"] <= 1e-4


def test_contract_mismatch_is_refused_naming_the_fields(model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["contract"]["sample_rate"] = 16000
    m["contract"]["n_bins"] = 128
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ContractError, match="sample_rate: 22050 != 16000.*n_bins"):
        load_model(bad)
    # a 42-frame contract is only served when asked for
    with pytest.raises(ContractError, match="audio_window_frames"):
        load_model(model_dir, expected=C.with_audio_window(42))


def test_bad_inputs_and_dirs_give_clear_errors(model_dir, tmp_path):
    enc = load_model(model_dir)
    with pytest.raises(ContractError, match=r"audio input must have shape \(batch, 1, 92, 84\)"):
        enc.embed_audio(np.zeros((2, 1, 92, 42), np.float32))
    with pytest.raises(ContractError, match="sheet input"):
        enc.embed_sheet(np.zeros((80, 100), np.float32))
    with pytest.raises(UserError, match="no manifest.json"):
        load_model(tmp_path)
    with pytest.raises(UserError, match="unknown backend"):
        load_model(model_dir, backend="tflite")
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(UserError, match="unknown model format"):
        load_model(tmp_path)


def test_models_that_embed_sheets_alike_share_a_fingerprint(model_dir, tmp_path):
    """A library records model_fingerprint: the sheet embedding space. A network with the same sheet
    pathway and another audio pathway (a distilled student) shares it; another sheet pathway or
    contract does not; a manifest without ``sheet_space`` (exported before) keeps its sha256."""
    from scoreid.tensors import model_fingerprint

    student = _trained_like_net()
    with torch.no_grad():
        for p in student.audio_encoder.parameters():
            p.add_(0.01)
    other = _trained_like_net()
    with torch.no_grad():
        other.cca.proj_b.mul_(1.01)
    for name, net in (("student", student), ("other", other)):
        export_model(net, tmp_path / name, {"preset": name}, tensorrt=False, log=lambda s: None)
    m = json.loads((model_dir / "manifest.json").read_text())
    assert m["sheet_space"] == _trained_like_net().sheet_space_digest() and len(m["sheet_space"]) == 64
    assert model_fingerprint(tmp_path / "student") == model_fingerprint(model_dir)
    assert model_fingerprint(tmp_path / "other") != model_fingerprint(model_dir)
    # the student's sheet.onnx embeds exactly as the teacher's: that is what the shared fingerprint claims
    x = np.random.default_rng(3).random((4, 1, 80, 100), np.float32)
    assert np.array_equal(
        load_model(tmp_path / "student").embed_sheet(x), load_model(model_dir).embed_sheet(x)
    )
    old = tmp_path / "old"
    old.mkdir()
    del m["sheet_space"]
    (old / "manifest.json").write_text(json.dumps(m))
    assert model_fingerprint(old) == hashlib.sha256((old / "manifest.json").read_bytes()).hexdigest()
    m["sheet_space"], m["contract"]["audio_window_frames"] = student.sheet_space_digest(), 168
    (old / "manifest.json").write_text(json.dumps(m))  # another contract: another space
    assert model_fingerprint(old) != model_fingerprint(model_dir)


def test_torch_backend_precision_and_device_are_checked(model_dir):
    with pytest.raises(UserError, match="torch precision must be fp32 or fp16"):
        load_model(model_dir, backend="torch", precision="int8")
    with pytest.raises(UserError, match="fp16 runs on a CUDA device only"):
        load_model(model_dir, backend="torch", precision="fp16", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="no CUDA device"):
            load_model(model_dir, backend="torch", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on the CI machines)")
def test_torch_fp16_on_cuda_matches_onnx_fp32(model_dir):
    rng = np.random.default_rng(0)
    ref, got = load_model(model_dir), load_model(model_dir, backend="torch", precision="fp16", device="cuda")
    a = rng.random((8, *audio_input_shape(ref.contract.audio_window_frames)), dtype=np.float32)
    e, h = ref.embed_audio(a), got.embed_audio(a)
    assert h.dtype == np.float32 and np.mean(np.sum(e * h, axis=1)) > 0.999


def test_tensorrt_backend_without_tensorrt_gpu_absent_says_what_to_install(model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails like on a machine without it
    with pytest.raises(BackendUnavailable, match=r"pip install 'scoreid\[gpu\]'"):
        load_model(model_dir, backend="tensorrt")
    assert issubclass(BackendUnavailable, UserError)  # the CLI prints it as one line


# --- a fake TensorRT (GPU mocked): plans hold the ONNX bytes, the context runs them with
# onnxruntime on the raw buffer addresses, so the real build/run code path is exercised. ---


def _fake_tensorrt(calls: list[str]) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class Network:
        onnx = b""

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data):
            self.network.onnx = data
            return True

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shape = (name, lo, opt, hi)

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(f"workspace {size}")

        def add_optimization_profile(self, profile):
            self.profile = profile

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(f"network flags {flags}")
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            name, lo, opt, hi = config.profile.shape
            header = json.dumps({"name": name, "min": lo, "opt": opt, "max": hi}).encode()
            calls.append(f"build {name} max {hi[0]}")
            return header + b"\n" + network.onnx

    class Context:
        def __init__(self, engine):
            self.engine, self.addr, self.shape = engine, {}, None

        def set_input_shape(self, name, shape):
            self.shape = shape

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            calls.append(f"execute batch {self.shape[0]}")
            n_in = int(np.prod(self.shape))
            x = np.ctypeslib.as_array((ctypes.c_float * n_in).from_address(self.addr[self.engine.name]))
            y = self.engine.sess.run(None, {self.engine.name: x.reshape(self.shape).copy()})[0]
            out = np.ctypeslib.as_array((ctypes.c_float * y.size).from_address(self.addr["embedding"]))
            out[:] = y.ravel()
            return True

    class Engine:
        def __init__(self, plan):
            header, onnx_bytes = plan.split(b"\n", 1)
            self.meta = json.loads(header)
            self.name = self.meta["name"]
            self.sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            self.num_io_tensors = 2

        def get_tensor_name(self, i):
            return [self.name, "embedding"][i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == self.name else TensorIOMode.OUTPUT

        def get_tensor_profile_shape(self, name, profile):
            return self.meta["min"], self.meta["opt"], self.meta["max"]

        def get_tensor_shape(self, name):
            return (-1, 32)

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return Engine(plan)

    for obj in (
        Logger,
        TensorIOMode,
        MemoryPoolType,
        NetworkDefinitionCreationFlag,
        OnnxParser,
        Builder,
        Runtime,
    ):
        setattr(trt, obj.__name__, obj)
    return trt


def test_tensorrt_export_and_backend_with_gpu_mocked(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(calls))
    monkeypatch.setattr("trainer.export.TRT_MAX_BATCH", 4)
    logs: list[str] = []
    net = _trained_like_net()
    manifest = export_model(net, tmp_path, {"preset": "test"}, log=logs.append, trt_device="cpu")
    for key in ("audio_trt_fp16", "audio_trt_fp32", "sheet_trt_fp16", "sheet_trt_fp32"):
        assert (tmp_path / manifest["files"][key]).is_file()
    assert "network flags 32" in calls and "build spec max 4" in calls and "build image max 4" in calls
    assert any("parity audio.fp16.plan" in line for line in logs)
    a, s = _inputs(9)  # 9 > max batch 4: the runner splits into 4 + 4 + 1
    with torch.no_grad():
        ra = net.embed_audio(torch.from_numpy(a)).numpy()
    calls.clear()
    enc = load_model(tmp_path, backend="tensorrt", device="cpu", precision="fp32")
    assert np.abs(enc.embed_audio(a) - ra).max() <= 1e-4
    assert calls == ["execute batch 4", "execute batch 4", "execute batch 1"]
    enc16 = load_model(tmp_path, backend="tensorrt", device="cpu")
    assert np.abs(enc16.embed_audio(a) - ra).max() <= 2e-2
    assert enc16.embed_sheet(s).shape == (9, 32)


def test_int8_audio_model_exported_checked_and_selectable(tmp_path, model_dir):
    """``int8_calibration``: audio.int8.onnx is written, compared with torch by cosine in the
    manifest, and served with precision="int8" (sheet stays fp32); a model without it says so."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    calib = np.abs(rng.normal(0, 0.5, (64, 1, 92, 84))).astype(np.float32)
    logs: list[str] = []
    # (a random network quantises worse than a trained one: mean cosine ~0.97 here)
    m = export_model(
        _trained_like_net(),
        tmp_path,
        {"preset": "test"},
        tensorrt=False,
        log=logs.append,
        int8_calibration=calib,
        int8_min_cos=0.95,
    )
    assert m["files"]["audio_onnx_int8"] == "audio.int8.onnx"
    assert m["training"]["parity_max_abs_diff"]["audio_onnx_int8_mean_cos"] >= 0.95
    assert any(line.startswith("int8 audio.int8.onnx vs torch: cosine mean") for line in logs)
    q, f = load_model(tmp_path, precision="int8"), load_model(tmp_path)
    a = np.abs(rng.normal(0, 0.5, (8, 1, 92, 84))).astype(np.float32)
    cos = np.sum(q.embed_audio(a) * f.embed_audio(a), axis=1)
    assert cos.min() > 0.9 and not np.array_equal(q.embed_audio(a), f.embed_audio(a))
    s = _inputs()[1]
    assert np.array_equal(q.embed_sheet(s), f.embed_sheet(s))
    with pytest.raises(UserError, match="no int8 audio model"):
        load_model(model_dir, precision="int8")
    with pytest.raises(UserError, match="fp32 or int8"):
        load_model(model_dir, precision="fp16")


EMULATED_AVX2 = ["qemu-x86_64", "-cpu", "Haswell"]  # AVX2 + FMA, no AVX-512, no VNNI (as AMD EPYC Zen 2/3)
INT8_ON_CPU = """
import sys, numpy as np, onnxruntime as ort
from numpy._core._multiarray_umath import __cpu_features__ as f
o = ort.SessionOptions(); o.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0])
print(" ".join(k for k in ("AVX2", "AVX512F", "AVX512_CNL", "AVX512_ICL") if f.get(k)))
"""


def test_int8_audio_model_is_the_same_on_avx2_and_avx512_vnni_cpus(tmp_path):
    """The int8 audio encoder must not depend on the CPU: ONNX Runtime's U8S8 kernels saturate on
    AVX2 CPUs without VNNI unless the weights use 7 bits (reduce_range). The model is run on this
    CPU and on an emulated AVX2-only CPU (qemu-x86_64 -cpu Haswell, whatever the host is), and
    both must give the same embeddings, close to fp32."""
    assert shutil.which(EMULATED_AVX2[0]), "qemu-x86_64 missing: run ./setup.sh (Debian package qemu-user)"
    rng = np.random.default_rng(2)
    calib = np.abs(rng.normal(0, 0.5, (64, 1, 92, 84))).astype(np.float32)
    export_model(
        _trained_like_net(),
        tmp_path,
        {"preset": "test"},
        tensorrt=False,
        log=lambda s: None,
        int8_calibration=calib,
        int8_min_cos=0.0,
    )
    x = np.abs(rng.normal(0, 0.5, (8, 1, 92, 84))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    got, isa = {}, {}
    for kind, prefix in (("host", []), ("avx2", EMULATED_AVX2)):
        out = tmp_path / f"{kind}.npy"
        cmd = [
            *prefix,
            sys.executable,
            "-c",
            INT8_ON_CPU,
            str(tmp_path / "audio.int8.onnx"),
            str(tmp_path / "x.npy"),
            str(out),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        got[kind], isa[kind] = np.load(out), r.stdout.split()
    assert "AVX2" in isa["avx2"] and "AVX512F" not in isa["avx2"], isa  # the emulated CPU is AVX2-only
    fp32 = load_model(tmp_path).embed_audio(x)
    for kind, e in got.items():
        cos = np.sum(e * fp32, axis=1) / np.linalg.norm(e, axis=1)
        assert cos.mean() >= 0.95 and cos.min() > 0.9, (kind, isa[kind], cos)
    assert np.abs(got["host"] - got["avx2"]).max() <= 1e-5, isa


def test_inaccurate_int8_model_is_left_out_not_fatal(tmp_path):
    calib = np.abs(np.random.default_rng(3).normal(0, 0.5, (32, 1, 92, 84))).astype(np.float32)
    logs: list[str] = []
    m = export_model(
        _trained_like_net(),
        tmp_path,
        {"preset": "test"},
        tensorrt=False,
        log=logs.append,
        int8_calibration=calib,
        int8_min_cos=0.99999,
    )
    assert "audio_onnx_int8" not in m["files"] and not (tmp_path / "audio.int8.onnx").exists()
    assert any("left out" in line for line in logs)
    assert load_model(tmp_path).embed_audio(calib[:2]).shape == (2, 32)
