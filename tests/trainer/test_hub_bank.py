"""``trainer/run.py hub-bank``: the model's audio bank of the hub correction, from the training split."""

from __future__ import annotations

import json
import shutil

import numpy as np
from trainer_runs import run_trainer

from scoreid.inference import load_model
from scoreid.search.hubness import bank_sha
from scoreid.tensors import model_fingerprint


def test_hub_bank_embeds_training_windows_into_the_model_deterministically(random_model, corpus, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(random_model, model)
    before = model_fingerprint(model)
    out = run_trainer(
        "hub-bank", "--model", str(model), "--data", str(corpus), "--n", "64", "--k", "5", "--weight", "0.4"
    ).stdout
    assert "64 audio windows" in out
    bank = np.load(model / "hub-bank.npy")
    assert bank.shape == (64, 32) and bank.dtype == np.float32
    assert np.allclose(np.linalg.norm(bank, axis=1), 1.0, atol=1e-5)  # the model's own audio embeddings
    hub = json.loads((model / "manifest.json").read_text())["hub"]
    assert hub["bank"] == "hub-bank.npy" and hub["k"] == 5 and hub["weight"] == 0.4
    assert hub["sha256"] == bank_sha(bank) and hub["source"]["split"] == "train"
    enc = load_model(model)
    assert enc.hub is not None and np.array_equal(enc.hub.bank, bank)
    assert model_fingerprint(model) == before  # libraries of the model stay valid
    run_trainer(
        "hub-bank", "--model", str(model), "--data", str(corpus), "--n", "64", "--k", "5", "--weight", "0.4"
    )
    assert np.array_equal(np.load(model / "hub-bank.npy"), bank)  # the same corpus and model: the same bank


def test_hub_bank_refuses_bad_arguments(random_model, corpus, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(random_model, model)
    res = run_trainer("hub-bank", "--model", str(model), "--data", str(corpus), "--k", "0", check=False)
    assert res.returncode != 0 and "--k" in res.stderr
    res = run_trainer("hub-bank", "--model", str(model), "--data", str(tmp_path), check=False)
    assert res.returncode != 0 and "not a corpus" in res.stderr
    assert not (model / "hub-bank.npy").exists()
