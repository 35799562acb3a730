"""The smoke preset end to end on a tiny corpus built by the tests (``conftest.py``): pretrain both encoders,
fine-tune, evaluate both conditions, export; then the exported model is loaded and re-evaluated,
a pre-training run is resumed, and user errors print one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from trainer_runs import run_trainer

from scoreid.inference import load_model
from trainer.run import main as trainer_main


def _main(capfd, *args: str) -> tuple[int, str, str]:
    """Run a trainer command in this process (saves the interpreter start-up); (code, out, err)."""
    code = trainer_main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def test_smoke_pipeline_end_to_end(corpus, tmp_path):
    runs, model = tmp_path / "runs", tmp_path / "model"
    # the pipeline runs as a real process, as CI and users run it
    proc = run_trainer(
        "pipeline",
        "--preset",
        "smoke",
        "--data",
        str(corpus),
        "--pool",
        str(corpus),
        "--out",
        str(runs),
        "--export",
        str(model),
    )
    for stage in ("pretrain-audio", "pretrain-sheet", "finetune-both"):
        for f in ("metrics.csv", "metrics.json", "metrics.png", "state.pt", "summary.json"):
            assert (runs / stage / f).is_file(), f"{stage}/{f}"
    assert (runs / "pretrain-audio" / "encoder.pt").is_file()
    summary = json.loads((runs / "finetune-both" / "summary.json").read_text())
    assert (
        summary["init_audio"].endswith("pretrain-audio") and summary["epochs"] == 3
    )  # 2 main + 1 refinement
    assert len(summary["cca_correlations"]) == 32
    for cond in ("same", "shifted"):
        res = json.loads((runs / "finetune-both" / f"eval-{cond}.json").read_text())
        sr, pi = res["snippet_retrieval"], res["piece_identification"]
        assert sr["N"] > 0 and set(sr["audio_to_sheet"]) == {"R@1", "R@10", "R@25", "MRR", "MR"}
        assert 0 <= sr["audio_to_sheet"]["MRR"] <= 1 and pi["windows_per_recording"] == 20 and pi["k"] == 25
        assert len(pi["accuracy_vs_seconds"]["top1"]) == 3
        assert 0 <= pi["product_votes"]["top1"] <= 1 and 0 < pi["product_votes"]["MRR"] <= 1
        ranks = [r["rank"] for r in pi["per_recording"]]
        assert len(ranks) == pi["recordings"] and pi["top1"] == pytest.approx(
            sum(r == 1 for r in ranks) / len(ranks)
        )
        assert (runs / "finetune-both" / f"eval-{cond}.png").is_file()
    assert "| both | same |" in (runs / "ablation.md").read_text()
    assert "parity audio.onnx vs torch: max abs diff" in proc.stdout
    assert "TensorRT plans skipped" in proc.stdout or (model / "audio.fp16.plan").is_file()
    assert "int8 audio.int8.onnx vs torch: cosine mean" in proc.stdout  # calibrated on the corpus

    # the exported model serves and `eval` on it reproduces the pipeline's numbers
    enc = load_model(model)
    assert enc.embed_audio(np.zeros((2, 1, 92, 84), np.float32)).shape == (2, 32)
    assert (model / "eval-same.json").is_file() and (model / "eval-same.png").is_file()  # the plot it names
    code = trainer_main(
        [
            "eval",
            "--preset",
            "smoke",
            "--model",
            str(model),
            "--data",
            str(corpus),
            "--condition",
            "same",
            "--out",
            str(tmp_path / "again.json"),
        ]
    )
    assert code == 0
    a = json.loads((tmp_path / "again.json").read_text())
    b = json.loads((model / "eval-same.json").read_text())
    for d in ("audio_to_sheet", "sheet_to_audio"):
        assert a["snippet_retrieval"][d]["MRR"] == pytest.approx(b["snippet_retrieval"][d]["MRR"], abs=0.02)
    assert a["piece_identification"]["top1"] == b["piece_identification"]["top1"]


def test_pretrain_resume_continues_the_run(corpus, tmp_path, capfd):
    out = tmp_path / "pre"
    args = ["pretrain", "--modality", "audio", "--preset", "smoke", "--data", str(corpus), "--out", str(out)]
    assert _main(capfd, *args, "--max-epochs", "1")[0] == 0
    code, stdout, stderr = _main(capfd, *args, "--max-epochs", "2", "--resume")
    assert code == 0 and "resumed" in stderr + stdout
    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_user_errors_are_one_line(corpus, tmp_path, capfd):
    for args, msg in (
        (
            ["eval", "--model", str(tmp_path), "--data", str(corpus), "--out", str(tmp_path / "x.json")],
            "no fine-tuned model",
        ),
        (["finetune", "--data", str(tmp_path), "--out", str(tmp_path / "ft")], "not a corpus"),
        (
            [
                "pretrain",
                "--modality",
                "sheet",
                "--data",
                str(corpus),
                "--out",
                str(tmp_path / "p"),
                "--resume",
            ],
            "nothing to resume",
        ),
        (
            ["export", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "m")],
            "no fine-tuned model",
        ),
    ):
        code, _, stderr = _main(capfd, *args)
        assert code == 2, stderr
        err = stderr.strip().splitlines()
        assert err[-1].startswith("scoreid: error:") and msg in err[-1] and "Traceback" not in stderr


def test_time_budget_ends_a_stage_after_the_step_that_crosses_it(corpus, tmp_path, capfd):
    out = tmp_path / "budget"
    code, _, _ = _main(
        capfd,
        "pretrain",
        "--modality",
        "sheet",
        "--preset",
        "smoke",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--max-epochs",
        "5",
        "--time-budget",
        "0.01",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "time budget" and summary["epochs"] == 1


def test_finetune_warm_start_from_a_finetuned_model(corpus, tmp_path, capfd):
    import torch

    from scoreid.models import load_checkpoint
    from trainer.finetune import load_finetuned

    first, second = tmp_path / "ft1", tmp_path / "ft2"
    common = [
        "finetune",
        "--preset",
        "smoke",
        "--data",
        str(corpus),
        "--max-epochs",
        "1",
        "--refine-max-epochs",
        "1",
    ]
    assert _main(capfd, *common, "--out", str(first))[0] == 0
    # the warm start takes every weight (both encoders and the CCA layer's buffers) of the run
    net, saved = load_finetuned(first, 84), load_checkpoint(first / "model.pt")
    for k, v in saved.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    assert _main(capfd, *common, "--seed", "1", "--out", str(second), "--init-model", str(first))[0] == 0
    summary = json.loads((second / "summary.json").read_text())
    assert summary["init_model"] == str(first) and summary["epochs"] == 2
    code, _, stderr = _main(
        capfd, *common, "--out", str(tmp_path / "ft3"), "--init-model", str(tmp_path / "none")
    )
    assert code == 2 and "no fine-tuned model" in stderr.strip().splitlines()[-1]
