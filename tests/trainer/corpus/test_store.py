"""The corpus file format: deterministic npz bytes, atomic writes, reader errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scoreid.errors import UserError
from trainer.corpus.store import Corpus, atomic_write_bytes, npz_bytes, read_meta


def test_npz_bytes_are_deterministic_and_loadable(tmp_path):
    arrays = {"a": np.arange(10, dtype=np.float32), "meta": np.array(json.dumps({"x": 1}))}
    b1 = npz_bytes(arrays)
    b2 = npz_bytes(dict(reversed(list(arrays.items()))))
    assert b1 == b2
    path = tmp_path / "p.npz"
    atomic_write_bytes(path, b1)
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], arrays["a"])
    assert read_meta(path) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temporary file left


def test_corpus_reader_errors(tmp_path):
    with pytest.raises(UserError, match="not a corpus"):
        Corpus(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "pieces": {}, "splits": {"train": []}}))
    c = Corpus(tmp_path)
    assert c.ids() == [] and c.ids("train") == []
    with pytest.raises(UserError, match="unknown split"):
        c.ids("nope")
    with pytest.raises(UserError, match="no piece"):
        c.load("missing")
