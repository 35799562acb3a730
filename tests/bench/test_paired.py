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


def test_copies_of_a_work_count_as_the_work(tmp_path, capsys):
    """``--copies``: a library holding scaled copies ``w-x0.75`` of each work: a copy ranked first
    or named is the work; another work's copy is not."""

    def run(size, tops):
        ex = [
            {
                "work": f"w{i}",
                "performer": "p",
                "length_s": 30.0,
                "start_s": 0.0,
                "size": size,
                "in_library": True,
                "rank": 1 if top == f"w{i}" else 2,
                "top1": top,
                "identity": top,
            }
            for i, top in enumerate(tops)
        ]
        return {"sizes": [size], "excerpts": ex}

    (tmp_path / "a.json").write_text(json.dumps(run(3, ["w0", "w1", "w0"])))
    (tmp_path / "b.json").write_text(json.dumps(run(9, ["w0-x0.75", "w0-x1.5", "w2-x1.5"])))
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--copies=-x[0-9.]+$"])
    out = capsys.readouterr().out
    assert "library 3/9, 30-s excerpts, 3 in every run" in out
    assert "top-1 0.667  identity right 0.667  vs a: +1 -1" in out
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "top-1 0.000  identity right 0.000  vs a: +0 -2" in capsys.readouterr().out
