"""bench/gpu.sh, the GPU run of the capacity work, as far as a machine without a GPU can check it: its CPU
rehearsal runs every step — export with parity checks, the plan-vs-ONNX embedding check, encoder
windows/s, streams through a real `scoreid up` stack with the load spread over processes — with
the ONNX backend in place of TensorRT, and the ``--backend torch`` run (PyTorch on CUDA in fp16 on a
GPU) with torch fp32 on the CPU (NO GPU HERE: the install, the plans and CUDA are not exercised)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend,served", [("tensorrt", "onnx"), ("torch", "torch")])
def test_gpu_script_cpu_rehearsal_runs_every_step_no_gpu_here(tmp_path, backend, served):
    out, extra = tmp_path / "gpu", []
    if backend == "torch":  # as bench/gpu_bundle.sh does: the stack's work prepared beforehand
        work = tmp_path / "work"
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.stack_streams",
                "--model",
                "models/default",
                "--work",
                str(work),
                "--prepare-only",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0 and "prepared" in r.stdout, r.stderr[-2000:]
        assert (work / "library-default" / "library.json").is_file() and not (work / "state").exists()
        extra = ["--work", str(work)]
    r = subprocess.run(
        [
            "bash",
            "bench/gpu.sh",
            "--cpu-rehearsal",
            "--backend",
            backend,
            "--out",
            str(out),
            "--streams",
            "2 4",
            "--seconds",
            "3",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "mean cosine 1.000000" in (out / "parity.txt").read_text()
    # the tensorrt run exports (plans on a GPU, ONNX here); the torch run serves the model as exported
    assert (out / "model" / "manifest.json").is_file() == (backend == "tensorrt")
    windows = json.loads((out / "windows.json").read_text())
    assert {(w["encoder"], w["batch"]) for w in windows["rows"]} >= {("audio", 1024), ("sheet", 1024)}
    streams = json.loads((out / "streams.json").read_text())
    assert [s["streams"] for s in streams["steps"]] == [2, 4]
    assert all(
        s["errors"] == 0 and s["missed_hops"] == 0 and s["loadgen_processes"] == 2 for s in streams["steps"]
    )
    assert streams["setup"]["backend"] == served


def test_gpu_script_refuses_a_machine_without_a_gpu_or_unknown_flags():
    r = subprocess.run(["bash", "bench/gpu.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown argument" in r.stderr
    r = subprocess.run(
        ["bash", "bench/gpu.sh", "--backend", "tflite"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2 and "--backend must be tensorrt or torch" in r.stderr
    r = subprocess.run(["bash", "bench/gpu_bundle.sh"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "gpu_bundle.sh DIR" in r.stdout
    r = subprocess.run(
        ["bash", "bench/gpu_bundle.sh", "/tmp/never", "--bogus"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2 and "unknown argument" in r.stderr
    if shutil.which("nvidia-smi") is None:  # on a GPU machine this would start the real run
        r = subprocess.run(
            ["bash", "bench/gpu.sh", "--out", "/tmp/never"], cwd=ROOT, capture_output=True, text=True
        )
        assert r.returncode == 2 and "not a GPU machine" in r.stderr
