"""bench.paired: wins, losses and the sign test over excerpts two realdev runs share."""

from __future__ import annotations

import json

import pytest

from bench.paired import main, sign_test


def test_sign_test():
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(5, 5) == 1.0


def test_wins_and_losses_against_the_first_run(tmp_path, capsys):
    def run(ranks):
        ex = [
            {
                "work": f"w{i}",
                "performer": "p",
                "length_s": 20.0,
                "start_s": 0.0,
                "size": 40,
                "in_library": True,
                "rank": r,
                "identity": f"w{i}" if r == 1 else None,
            }
            for i, r in enumerate(ranks)
        ]
        return {"sizes": [40], "excerpts": ex}

    (tmp_path / "a.json").write_text(json.dumps(run([1, 1, 2, None])))
    (tmp_path / "b.json").write_text(json.dumps(run([1, 3, 1, 1])))
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert "a  " in out and "top-1 0.500" in out
    assert "top-1 0.750  identity right 0.750  vs a: +2 -1" in out
