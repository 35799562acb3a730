"""bench/identity_fit.py: a dumped hop gives the engine's top piece and its evidence as the engine
computes them, folds keep a work out of the model that judges it, and the threshold keeps wrong
identities within the bound at every size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench import identity_fit as F
from scoreid.identify import confidence as K


def test_a_dumped_hop_gives_the_engines_top_piece_and_sequence_margin():
    # [piece, tally, evidence (piece null), coherence, evidence (library null)], in tally order
    cands = [["a", 10.0, 0.0, 0.9, -5.0], ["b", 9.0, 0.0, 0.8, 30.0], ["c", 1.0, 0.0, 0.1, 2.0]]
    top, ev = F.evidence_of_hop(cands, [40, 0.5, 0.1, 0.9, 0.2])
    assert top == "b"  # log(9) + 0.1 * 30 beats log(10) - 0.5
    assert ev.sequence == 30.0 and ev.sequence_margin == 30.0 - 2.0
    assert (ev.windows, ev.share, ev.log_ratio, ev.coherence, ev.stillness) == (40, 0.5, 0.1, 0.9, 0.2)
    assert K.features(ev, "margin") == (1.0, np.log1p(40), 0.1, 0.9, 2.8)


def synthetic_dump(path: Path, seed: int = 0) -> None:
    """Streams whose right top piece comes with a large sequence margin, wrong ones with none."""
    rng = np.random.default_rng(seed)
    out = []
    for w in range(24):
        for size, inside in ((10, True), (100, True), (100, False)):
            right = inside and w % 4 != 0
            hops = []
            for h in range(40):
                margin = (25.0 if right else -3.0) + rng.normal(0, 4)
                truth_top = f"w{w}" if right else "x"
                cands = [[truth_top, 5.0, 0.0, 0.9, margin], ["y", 4.0, 0.0, 0.5, 0.0]]
                ev = [h + 1, 0.3 if size == 10 else 0.05, 0.2, 0.9, 0.1]
                hops.append([0.5 * (h + 1), cands, ev, None, 0.0])
            out.append(
                {
                    "truth": f"w{w}",
                    "in_library": inside,
                    "size": size,
                    "hops": hops,
                    "length_s": 20.0,
                    "composer": "A",
                }
            )
    path.write_text(json.dumps(out))


def test_fit_check_and_threshold_on_a_synthetic_dump(tmp_path):
    synthetic_dump(tmp_path / "d.json")
    streams = F.read_streams([tmp_path / "d.json"])
    assert len(streams) == 72 and streams[0].label.sum() == 0 and streams[3].label.sum() == 40
    assert {F.fold_of(s.work, 2) for s in streams} == {0, 1}
    out = tmp_path / "fit.json"
    assert F.main([str(tmp_path / "d.json"), "--features", "margin", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    inside = [r for r in res["rows"] if r["in_library"]]
    outside = [r for r in res["rows"] if not r["in_library"]]
    assert all(r["wrong"] <= 0.01 for r in inside) and all(r["wrong"] <= 0.02 for r in outside)
    assert all(r["right"] >= 0.7 for r in inside)  # 3 in 4 streams are right, and found at both sizes
    assert len(res["coef_all_works"]) == len(K.FEATURE_SETS["margin"])


def test_shipped_replays_the_engines_coefficients_and_threshold(tmp_path):
    synthetic_dump(tmp_path / "d.json")
    out = tmp_path / "shipped.json"
    assert F.main([str(tmp_path / "d.json"), "--shipped", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["shipped"] and res["threshold"] == K.THRESHOLD and res["features"] == K.FEATURES
    assert res["coef"] == [round(c, 4) for c in K.COEF]
    streams = F.read_streams([tmp_path / "d.json"])
    probs = [F.probabilities(s, np.array(K.COEF), K.FEATURES) for s in streams]
    assert res["rows"] == F.table(streams, probs, K.THRESHOLD)
