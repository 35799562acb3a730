"""Distillation (trainer.distill, ``trainer/run.py distill``): the frozen teacher parts of the student,
a smoke run on the tiny corpus whose sheet pathway is exactly the teacher's, its export (sheet.onnx
embeds as the teacher's does), resume reproducing the uninterrupted run, a warm start of
fine-tuning from a student, and the user errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import torch

from scoreid.errors import UserError
from scoreid.inference import load_model
from scoreid.models import CrossModalNet, load_checkpoint, save_checkpoint
from scoreid.tensors import model_fingerprint
from trainer import distill, presets
from trainer.run import main as trainer_main

STUDENT = {"audio_frames": 84, "dim": 32, "audio_filters": [12, 24, 48, 48], "audio_stem": "stride2"}
FROZEN = ("sheet_encoder.", "sheet_head.", "cca.")


def make_teacher(path, seed: int = 1) -> CrossModalNet:
    """A random fine-tuned network with a non-trivial CCA layer (its sheet projection is not the identity)."""
    torch.manual_seed(seed)
    net = CrossModalNet().eval()
    with torch.no_grad():
        net.cca.refit(torch.randn(200, 32), torch.randn(200, 32) @ torch.randn(32, 32))
    path.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net, path / "model.pt", {"preset": "random test teacher"})
    return net


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher")
    make_teacher(path)
    return path


def _main(capfd, *args: str) -> tuple[int, str, str]:
    code = trainer_main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def _rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_student_trains_only_its_audio_pathway():
    torch.manual_seed(0)
    teacher = CrossModalNet().eval()
    with torch.no_grad():
        teacher.cca.refit(torch.randn(100, 32), torch.randn(100, 32))
    net = distill.make_student(teacher, (12, 24, 48, 48), "stride2")
    student = distill.Student(net).train()
    assert not any(m.training for m in student.frozen()) and net.audio_encoder.training
    frozen_before = {k: v.clone() for k, v in net.state_dict().items() if k.startswith(FROZEN)}
    audio_before = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("audio_")}
    assert len(frozen_before) > 20
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen_before.items())
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    audio, sheet = torch.rand(8, 1, 92, 84), (torch.rand(8, 1, 80, 100) < 0.1).float()
    cfg = presets.get("smoke").distill
    loss = distill.train_step(student, teacher, opt, audio, sheet, cfg)
    assert np.isfinite(loss) and loss > 0
    after = net.state_dict()
    # the teacher's parts, BatchNorm running statistics and CCA buffers included, are untouched
    assert all(torch.equal(after[k], v) for k, v in frozen_before.items())
    assert all(not after[k].equal(v) for k, v in audio_before.items() if k.endswith("weight"))
    with pytest.raises(UserError, match="unknown stem"):
        distill.make_student(teacher, (12, 24, 48, 48), "stride3")


@pytest.fixture(scope="module")
def student_run(corpus, teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "run"
    code = trainer_main(
        [
            "distill",
            "--preset",
            "smoke",
            "--data",
            str(corpus),
            "--teacher",
            str(teacher),
            "--out",
            str(out),
            "--filters",
            "12,24,48,48",
            "--stem",
            "stride2",
        ]
    )
    assert code == 0
    return out


def test_distill_smoke_run_keeps_the_teachers_sheet_pathway(student_run, teacher, corpus):
    for f in (
        "model.pt",
        "best.pt",
        "state.pt",
        "metrics.csv",
        "metrics.json",
        "metrics.png",
        "summary.json",
    ):
        assert (student_run / f).is_file(), f
    summary = json.loads((student_run / "summary.json").read_text())
    assert summary["architecture"] == STUDENT and summary["teacher_architecture"]["audio_filters"] == [
        24,
        48,
        96,
        96,
    ]
    assert summary["epochs"] == 3  # 2 main + 1 refinement (smoke)
    assert summary["audio_mmac_per_window"]["student"] < summary["audio_mmac_per_window"]["teacher"] / 4
    assert set(summary["teacher_val"]) == {"val_MRR", "val_R@1", "val_R@10", "val_MRR_s2a"}
    assert 0 < summary["val"]["val_MRR"] <= 1 and -1 <= summary["val"]["val_cos_teacher"] <= 1
    assert summary["val"]["val_MRR"] == summary["best_val_MRR"]
    assert "val_cos_teacher" in _rows(student_run)[0]

    tnet, snet = load_checkpoint(teacher / "model.pt"), load_checkpoint(student_run / "model.pt")
    assert snet.config == STUDENT
    ts, ss = tnet.state_dict(), snet.state_dict()
    frozen = [k for k in ts if k.startswith(FROZEN)]
    assert len(frozen) > 20 and all(torch.equal(ss[k], ts[k]) for k in frozen)
    from trainer.data import PairSet, open_corpus

    pairs = PairSet.from_corpus(open_corpus(corpus), "valid")
    idx = pairs.evenly(16)
    with torch.no_grad():
        sheets = torch.from_numpy(pairs.sheet_batch(idx))
        assert torch.equal(snet.embed_sheet(sheets), tnet.embed_sheet(sheets))
        audio = torch.from_numpy(pairs.audio_batch(idx, 84))
        assert snet.embed_audio(audio).shape == (16, 32)


def test_export_of_a_distilled_run(student_run, teacher, corpus, tmp_path, capfd):
    code, out, _ = _main(
        capfd,
        "export",
        "--model",
        str(student_run),
        "--out",
        str(tmp_path / "student"),
        "--no-tensorrt",
        "--int8-calibration",
        "64",
    )
    assert code == 0 and "parity audio.onnx vs torch" in out
    code, _, _ = _main(
        capfd,
        "export",
        "--model",
        str(teacher),
        "--data",
        str(corpus),
        "--out",
        str(tmp_path / "teacher"),
        "--no-tensorrt",
        "--int8-calibration",
        "0",
    )
    assert code == 0
    manifest = json.loads((tmp_path / "student" / "manifest.json").read_text())
    assert manifest["training"]["architecture"] == STUDENT
    assert manifest["training"]["teacher"] == str((teacher / "model.pt").resolve())
    assert manifest["files"]["audio_onnx_int8"] == "audio.int8.onnx"  # calibrated on the corpus

    # audio.onnx is the student: its first convolution has 12 filters and stride 2
    graph = onnx.load(str(tmp_path / "student" / "audio.onnx")).graph
    conv = next(n for n in graph.node if n.op_type == "Conv")
    weights = {i.name: i for i in graph.initializer}
    assert weights[conv.input[1]].dims[0] == 12
    assert [a.ints for a in conv.attribute if a.name == "strides"] == [[2, 2]]

    student, teach = load_model(tmp_path / "student"), load_model(tmp_path / "teacher")
    sheets = (np.random.default_rng(0).random((8, 1, 80, 100)) < 0.1).astype(np.float32)
    assert np.array_equal(student.embed_sheet(sheets), teach.embed_sheet(sheets))
    # so the student serves the teacher's libraries: both record the same sheet embedding space
    assert model_fingerprint(tmp_path / "student") == model_fingerprint(tmp_path / "teacher")
    audio = np.abs(np.random.default_rng(1).normal(0, 0.5, (4, 1, 92, 84))).astype(np.float32)
    int8 = load_model(tmp_path / "student", precision="int8")
    assert int8.embed_audio(audio).shape == student.embed_audio(audio).shape == (4, 32)


class Interrupt(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_run(corpus, teacher, tmp_path):
    torch.set_num_threads(1)
    cfg = presets.get("smoke").distill
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    distill.run(cfg, corpus, whole, teacher, log=lambda msg: None)

    def stop(msg):  # between the stages: state.pt and best.pt are the main stage's last epoch's
        if msg.startswith("refinement round 1:"):
            raise Interrupt(msg)

    with pytest.raises(Interrupt):
        distill.run(cfg, corpus, parts, teacher, log=stop)
    messages: list[str] = []
    distill.run(cfg, corpus, parts, teacher, seed=5, resume=True, log=messages.append)
    assert any(m.startswith(f"resumed {parts} at stage 0 epoch 2") for m in messages)
    ra, rb = _rows(whole), _rows(parts)
    for r in ra + rb:
        r.pop("seconds")
    assert rb == ra and len(ra) == 3
    a, b = load_checkpoint(whole / "model.pt").state_dict(), load_checkpoint(parts / "model.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    other = tmp_path / "other-teacher"
    make_teacher(other, seed=2)
    with pytest.raises(UserError, match="another teacher"):
        distill.run(cfg, corpus, parts, other, resume=True, log=lambda msg: None)


def test_finetune_warm_start_from_a_student_keeps_its_architecture(student_run, corpus, tmp_path, capfd):
    out = tmp_path / "ft"
    code, _, _ = _main(
        capfd,
        "finetune",
        "--preset",
        "smoke",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--max-epochs",
        "1",
        "--refine-max-epochs",
        "1",
        "--init-model",
        str(student_run),
    )
    assert code == 0 and load_checkpoint(out / "model.pt").config == STUDENT


def test_user_errors_are_one_line(corpus, teacher, tmp_path, capfd):
    common = ["distill", "--preset", "smoke", "--data", str(corpus), "--out", str(tmp_path / "d")]
    for args, msg in (
        (["--teacher", str(tmp_path / "none")], "no fine-tuned model"),
        (["--teacher", str(teacher), "--resume"], "nothing to resume"),
        (
            ["--teacher", str(teacher), "--cos-weight", "0", "--nce-weight", "0"],
            "must be >= 0 and not both 0",
        ),
    ):
        code, _, stderr = _main(capfd, *common, *args)
        assert code == 2 and stderr.strip().splitlines()[-1].startswith("scoreid: error:") and msg in stderr
    with pytest.raises(SystemExit):  # argparse: bad --filters
        trainer_main([*common, "--teacher", str(teacher), "--filters", "12,0"])
