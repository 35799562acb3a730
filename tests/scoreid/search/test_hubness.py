"""The hub correction: hubness scores, corrected search on every path, and libraries that carry them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import cli

from scoreid.errors import UserError
from scoreid.inference import load_model
from scoreid.library.store import Library, load_piece
from scoreid.search import hubness as H
from scoreid.search.exact import ExactIndex


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_hub_scores_are_the_mean_of_the_k_nearest_bank_similarities_whatever_the_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    rows, bank = unit(rng.normal(size=(300, 32))), unit(rng.normal(size=(500, 32)))
    got = H.hub_scores(rows, bank, k=7)
    want = np.sort(rows.astype(np.float64) @ bank.T.astype(np.float64), axis=1)[:, -7:].mean(axis=1)
    assert got.dtype == np.float32 and np.allclose(got, want, atol=1e-6)
    monkeypatch.setattr(H, "HUB_CHUNK", 17)
    assert np.array_equal(H.hub_scores(rows, bank, k=7), got)  # blocks never change a bit
    with pytest.raises(ValueError):
        H.hub_scores(rows, bank[:, :16])


def test_a_hub_stops_winning_searches_for_music_it_is_not():
    """Audio embeddings sit closer to the middle of the space than sheet windows (a modality gap): the
    window at the middle is the nearest neighbour of most queries; corrected, each query finds its
    own window."""
    rng = np.random.default_rng(1)
    centre = unit(rng.normal(size=32))
    d = rng.normal(size=(50, 32)) / np.sqrt(32)
    own = unit(centre + 1.5 * d)  # each query's own sheet window
    queries = unit(centre + 0.5 * d + 0.1 * rng.normal(size=d.shape) / np.sqrt(32))
    bank = unit(centre + 0.5 * rng.normal(size=(400, 32)) / np.sqrt(32))  # audio of other music
    rows = np.vstack([own, centre[None]])  # row 50 is the hub
    plain = ExactIndex(rows).search(queries, 1)[1][:, 0]
    hub = H.hub_scores(rows, bank)
    assert hub[50] == hub.max()
    scores, corrected = ExactIndex(H.search_rows(rows, hub, 1.0)).search(H.search_queries(queries, True), 1)
    assert np.mean(plain == 50) > 0.5  # the hub wins most plain searches...
    assert np.mean(corrected[:, 0] == np.arange(50)) > 0.95  # ...and none corrected
    i = 0  # the score returned is the corrected one
    want = float(queries[i] @ rows[corrected[i, 0]] - hub[corrected[i, 0]])
    assert abs(float(scores[i, 0]) - want) < 1e-5


def test_no_correction_leaves_rows_and_queries_as_they_are():
    v = unit(np.random.default_rng(2).normal(size=(10, 32)))
    assert H.search_rows(v, None, 0.5) is not None and H.search_rows(v, None, 0.5).shape == (10, 32)
    assert H.search_rows(v, np.ones(10), 0.0).shape == (10, 32)
    assert H.search_queries(v[0], False).shape == (1, 32)
    assert H.search_queries(v[:3], True)[:, -1].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        H.search_rows(v, np.ones(9), 0.5)


# --------------------------------------------------------------------------- with a model and libraries
def with_bank(model: Path, out: Path, weight: float = 0.5, n: int = 256) -> Path:
    """A copy of ``model`` with a hub bank of its own audio embeddings of random spectrograms."""
    shutil.copytree(model, out)
    enc = load_model(out)
    x = np.abs(np.random.default_rng(3).normal(0, 0.5, (n, *enc.audio_shape))).astype(np.float32)
    bank = enc.embed_audio(x)
    np.save(out / "hub-bank.npy", bank)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["hub"] = {"bank": "hub-bank.npy", "k": 5, "weight": weight, "sha256": H.bank_sha(bank)}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def build(sheets: Path, lib: Path, model: Path) -> None:
    res = cli("library", "build", sheets, "--out", lib, "--model", model)
    assert res.returncode == 0, res.stderr


def test_a_library_built_with_a_bank_scores_its_windows_and_searches_corrected(
    random_model, sheets_dir, tmp_path
):
    model = with_bank(random_model, tmp_path / "model")
    enc = load_model(model)
    assert enc.hub is not None and enc.hub.k == 5 and enc.hub.bank.shape == (256, 32)
    build(sheets_dir, tmp_path / "lib", model)
    index = json.loads((tmp_path / "lib" / "library.json").read_text())
    assert index["hub"] == {"bank": enc.hub.sha256, "k": 5, "weight": 0.5}
    lib = Library.open(tmp_path / "lib")
    assert lib.hub_weight == 0.5 and np.all(lib.hub != 0)
    assert np.allclose(lib.hub, H.hub_scores(lib.vectors, enc.hub.bank, 5))
    assert lib.search_vectors.shape == (len(lib), 33)
    q = unit(np.random.default_rng(4).normal(size=(3, 32)))
    sims, rows = ExactIndex(lib.search_vectors).search(lib.search_queries(q), 5)
    want = q @ lib.vectors.T - 0.5 * lib.hub
    assert np.array_equal(rows, np.argsort(-want, axis=1, kind="stable")[:, :5])
    # a subset keeps each row's score
    sub = lib.subset(lib.piece_ids[:1])
    s, e = lib.rows[lib.piece_ids[0]]
    assert np.array_equal(sub.hub, lib.hub[s:e])


def test_an_old_library_is_rescored_from_its_vectors_and_a_stale_piece_counts_as_uncorrected(
    random_model, sheets_dir, tmp_path
):
    build(sheets_dir, tmp_path / "lib", random_model)  # no bank: no correction
    before = Library.open(tmp_path / "lib")
    assert "hub" not in before.index and before.hub_weight == 0.0 and before.search_vectors.shape[1] == 32
    model = with_bank(random_model, tmp_path / "model")
    build(sheets_dir, tmp_path / "lib", model)  # the same pages: nothing embedded again, only scored
    after = Library.open(tmp_path / "lib")
    assert np.array_equal(after.vectors, before.vectors)
    assert np.allclose(after.hub, H.hub_scores(after.vectors, load_model(model).hub.bank, 5))
    # a piece scored against another bank is not corrected (as if the re-scoring had not reached it)
    pid = after.piece_ids[0]
    pv = load_piece(tmp_path / "lib", pid)
    from scoreid.library.store import save_piece

    pv.hub_bank = "0" * 64
    save_piece(tmp_path / "lib", pid, pv)
    stale = Library.open(tmp_path / "lib")
    s, e = stale.rows[pid]
    assert np.all(stale.hub[s:e] == 0) and np.all(stale.hub[e:] != 0)


def test_a_malformed_hub_entry_is_refused_with_its_reason(random_model, tmp_path):
    model = with_bank(random_model, tmp_path / "model")
    manifest = json.loads((model / "manifest.json").read_text())
    for bad, why in (
        ({**manifest["hub"], "sha256": "f" * 64}, "does not match"),
        ({**manifest["hub"], "bank": "../x.npy"}, "missing"),
        ({**manifest["hub"], "k": 0}, "k must be"),
    ):
        (model / "manifest.json").write_text(json.dumps({**manifest, "hub": bad}))
        with pytest.raises(UserError, match=why):
            _ = load_model(model).hub
