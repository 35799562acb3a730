"""Adding a built piece to a served library: stored in the directory and served at once (rows after
the others', chance weights follow), the same as reopening the directory; a failed write leaves the
directory and the served library as they were."""

from __future__ import annotations

import numpy as np
import pytest

import scoreid.library.store as store
from bench.libwriter import unit_rows, write_core_library
from index_svc.library import ServedLibrary
from scoreid.library.store import Library, Piece, PieceVectors


def new_piece(pid: str, n: int, seed: int = 5) -> Piece:
    v = unit_rows(np.random.default_rng(seed), n)
    x = np.arange(n, dtype=np.float32) * 6.0
    meta = {
        "page": np.zeros(n, np.int16),
        "system": np.zeros(n, np.int16),
        "x": x + 60.0,
        "y0": np.full(n, 100.0, np.float32),
        "y1": np.full(n, 260.0, np.float32),
        "strip_x": x + 3.0,
    }
    entry = {
        "title": "New Piece",
        "composer": "",
        "pages": [],
        "n_windows": n,
        "system_offsets": [0],
        "strip_width": 6.0 * n,
        "warnings": [],
    }
    return Piece(pid, entry, PieceVectors(v, meta))


@pytest.fixture
def served(tmp_path) -> ServedLibrary:
    rng = np.random.default_rng(0)
    d = write_core_library(tmp_path / "lib", {"b-piece": unit_rows(rng, 40), "a-piece": unit_rows(rng, 20)})
    return ServedLibrary.open(d, "test")


def listing(served: ServedLibrary) -> tuple[bytes, list[str]]:
    d = served.path
    assert d is not None
    return (d / "library.json").read_bytes(), sorted(p.name for p in (d / "pieces").iterdir())


def test_an_added_piece_is_stored_and_served_at_once(served):
    n0 = len(served)
    assert served.hit(0, 1.0)["chance_weight"] == pytest.approx(1.5**0.75)  # a-piece: 20 of a mean 30
    piece = new_piece("c-new", 30)
    served.add(piece)
    assert len(served) == n0 + 30 and served.piece_ids == ["a-piece", "b-piece", "c-new"]
    s, r = served.search(piece.rows.vectors[7], 1)
    hit = served.hit(int(r[0, 0]), float(s[0, 0]))
    assert r[0, 0] == n0 + 7 and hit["piece"] == "c-new" and hit["x"] == pytest.approx(7 * 6.0 + 60.0)
    assert hit["chance_weight"] == pytest.approx(1.0)  # mean (20 + 40 + 30) / 3 = 30 windows
    assert served.titles["c-new"] == "New Piece"
    again = Library.open(served.path)  # the directory holds the same library
    assert again.piece_ids == served.piece_ids
    for pid in again.piece_ids:
        (s0, e0), (s1, e1) = again.rows[pid], served.library.rows[pid]
        assert np.array_equal(again.vectors[s0:e0], served.vectors[s1:e1])
        assert all(np.array_equal(again.meta[k][s0:e0], served.library.meta[k][s1:e1]) for k in again.meta)
    with pytest.raises(ValueError, match="already"):
        served.add(new_piece("c-new", 5))


def test_a_failed_write_changes_nothing(served, monkeypatch):
    before, n0, ids = listing(served), len(served), list(served.piece_ids)

    def full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "write_index", full)
    with pytest.raises(OSError, match="No space"):
        served.add(new_piece("c-new", 30))
    assert listing(served) == before and len(served) == n0 and served.piece_ids == ids
    monkeypatch.undo()
    served.add(new_piece("c-new", 30))  # and then it goes through
    assert "c-new.npz" in listing(served)[1] and len(served) == n0 + 30
