"""bench/realdev_follow.py's truth mapping: repeats unfolded, downbeats matched, the time error
and backward jumps (small synthetic inputs, no data needed)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import realdev_follow as F


def musicxml(measures: list[str], time_sig: str = "4/4", divisions: int = 1) -> str:
    """A one-part score; each measure given as '<barlines>|<quarters>' (quarters = its length)."""
    beats, beat_type = time_sig.split("/")
    body = []
    for k, spec in enumerate(measures):
        bars, quarters = spec.split("|")
        att = (
            (
                f"<attributes><divisions>{divisions}</divisions><time><beats>{beats}</beats>"
                f"<beat-type>{beat_type}</beat-type></time></attributes>"
            )
            if k == 0
            else ""
        )
        notes = "".join(
            f"<note><pitch><step>C</step><octave>4</octave></pitch><duration>{divisions}</duration></note>"
            for _ in range(int(quarters))
        )
        body.append(f'<measure number="{k + 1}">{att}{bars}{notes}</measure>')
    return f'<score-partwise version="3.1"><part id="P1">{"".join(body)}</part></score-partwise>'


FWD = '<barline location="left"><repeat direction="forward"/></barline>'
BWD = '<barline location="right"><repeat direction="backward"/></barline>'


def volta(n: str, kind: str, loc: str) -> str:
    return f'<barline location="{loc}"><ending number="{n}" type="{kind}"/></barline>'


def test_unfold_repeat_and_voltas() -> None:
    # m1 | m2 :| with voltas: |: m2 m3 |1. m4 :|2. m5 | m6
    xml = musicxml(
        [
            "|4",
            FWD + "|4",
            "|4",
            volta("1", "start", "left") + volta("1", "stop", "right") + BWD + "|4",
            volta("2", "start", "left") + volta("2", "discontinue", "right") + "|4",
            "|4",
        ]
    )
    ms = F.parse_measures(xml)
    assert [m.length_q for m in ms] == [4.0] * 6
    assert ms[3].ending == (1,) and ms[4].ending == (2,) and ms[5].ending == ()
    assert F.unfold(ms) == [0, 1, 2, 3, 1, 2, 4, 5]
    assert F.unfold(ms, repeats=False) == [0, 1, 2, 4, 5]  # the last volta only


def test_unfold_repeat_from_start_and_two_sections() -> None:
    xml = musicxml(["|4", BWD + "|4", FWD + "|4", BWD + "|4", "|4"])
    ms = F.parse_measures(xml)
    assert F.unfold(ms) == [0, 1, 0, 1, 2, 3, 2, 3, 4]


def test_upbeat_and_split_bar_downbeats() -> None:
    # upbeat of 1 quarter, |: m1 m2(3 quarters) :| — the repeat closes the split bar with the upbeat
    xml = musicxml(["|1", FWD + "|4", BWD + "|3", "|4"])
    ms = F.parse_measures(xml)
    order = F.unfold(ms)
    assert order == [0, 1, 2, 1, 2, 3]
    assert F.downbeat_flags(order, ms) == [False, True, True, True, True, True]
    # 5 downbeats: the beats map onto the unfolded quarters, the upbeat before the first
    labels = (
        ["b"]
        + ["db", "b", "b", "b"] * 1
        + ["db", "b", "b"]
        + ["db", "b", "b", "b"]
        + ["db", "b", "b"]
        + ["db"]
    )
    got = F.match_unfolding(ms, labels)
    assert not isinstance(got, str)
    unf, bq, edits = got
    assert unf.repeats and edits == 0
    assert bq[0] == pytest.approx(0.0) and bq[1] == pytest.approx(1.0)  # upbeat, then m1's downbeat
    _u, w = unf.written(np.array([1.5, 9.5, 12.5]))  # in m1 (1st pass), m1 (2nd pass), m2 (2nd pass)
    assert w == pytest.approx([1.125, 1.375, 2 + 0.5 / 3])


def test_mismatched_downbeats_are_a_reason() -> None:
    ms = F.parse_measures(musicxml(["|4", BWD + "|4", "|4"]))
    assert isinstance(F.match_unfolding(ms, ["db", "b"] * 40), str)  # far too many downbeats
    # without the repeat (a _no_repeat performance): 3 downbeats
    got = F.match_unfolding(ms, ["db", "b", "b", "b"] * 2 + ["db"])
    assert not isinstance(got, str) and not got[0].repeats and got[2] == 0


def test_a_downbeat_missing_from_the_annotations_is_aligned() -> None:
    ms = F.parse_measures(musicxml(["|4"] * 6))
    # the third bar's downbeat is not annotated: bars of 4, 8, 4, 4 beats, then the last downbeat
    labels = ["db", "b", "b", "b"] + ["db"] + ["b"] * 7 + ["db", "b", "b", "b"] * 2 + ["db"]
    got = F.match_unfolding(ms, labels)
    assert not isinstance(got, str)
    unf, bq, edits = got
    assert edits == 1
    assert bq[4] == pytest.approx(4.0) and bq[12] == pytest.approx(12.0) and bq[-1] == pytest.approx(20.0)
    assert bq[8] == pytest.approx(8.0)  # inside the long bar: the beats spread evenly


def repeat_truth() -> tuple[np.ndarray, np.ndarray]:
    """Two measures a second each, played twice (m0 m1 m0 m1): written position against time."""
    t = np.arange(0.0, 4.0, 0.05)
    return t, np.where(t < 2.0, t, t - 2.0)


def test_time_error_with_a_repeat() -> None:
    t, w = repeat_truth()
    assert F.time_error(w, t, 3.0, 1.0) == pytest.approx(0.0, abs=1e-9)  # at m1, second pass
    assert F.time_error(w, t, 3.0, 0.9) == pytest.approx(-0.1, abs=1e-6)  # a little behind
    # the first pass's m0.5 is at 0.5 s, the second's at 2.5 s: the nearer one counts
    assert F.time_error(w, t, 3.0, 0.5) == pytest.approx(-0.5, abs=1e-6)
    assert F.time_error(w, t, 0.8, 1.4) == pytest.approx(0.6, abs=1e-6)
    # the jump back (1.95 -> 0.0 at 2.0 s) is no crossing: m1.0 was played at 1.0 s and 3.0 s
    assert abs(F.time_error(w, t, 2.0, 1.0)) == pytest.approx(1.0, abs=1e-6)
    # 1.99 is reached only near 2.0 s
    assert F.time_error(w, t, 2.0, 1.99) == pytest.approx(-0.05, abs=0.051)


def test_spurious_back_jumps() -> None:
    gt, gw = repeat_truth()
    hops = np.arange(0.5, 4.0, 0.5)
    followed = np.interp(hops, gt, gw)  # follows the repeat exactly: no spurious jump
    assert F.spurious_back_jumps(hops, followed, gt, gw) == 0
    wrong = followed.copy()
    wrong[1] = -1.0  # jumps back by 1.5 measures at 1.0 s where the performer went on
    assert F.spurious_back_jumps(hops, wrong, gt, gw) == 1
    # a jump back by less than a measure is no jump
    small = followed.copy()
    small[1] = followed[0] - 0.5
    assert F.spurious_back_jumps(hops, small, gt, gw) == 0
    # the truth's own back-jumps
    tr = F.Truth(gt, gw, gw, gw * 0, gw * 0, True)
    assert tr.back_jumps() == 1


def test_note_agreement_checks_the_truth() -> None:
    # four 4/4 measures of rising quarter notes C4 D4 E4 F4 | G4 A4 B4 C5 | ..., one beat a second
    steps = [("C", 4), ("D", 4), ("E", 4), ("F", 4), ("G", 4), ("A", 4), ("B", 4), ("C", 5)] * 2
    body = []
    for k in range(4):
        att = "<attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>"
        notes = "".join(
            f"<note><pitch><step>{s}</step><octave>{o}</octave></pitch><duration>1</duration></note>"
            for s, o in steps[4 * k : 4 * k + 4]
        )
        body.append(f'<measure number="{k + 1}">{att if k == 0 else ""}{notes}</measure>')
    xml = f'<score-partwise><part id="P1">{"".join(body)}</part></score-partwise>'
    ms = F.parse_measures(xml)
    notes = F.score_notes(xml)
    assert [p for _k, _q, p in notes[:5]] == [60, 62, 64, 65, 67]
    t = np.arange(0.0, 16.0, F.GRID_S)
    truth = F.Truth(t, t / 4.0, t, t * 0, t * 0, True)
    perf = [(float(i), p) for i, (_k, _q, p) in enumerate(notes)]
    assert F.note_agreement(perf, truth, ms, notes, 0.0, 16.0) == pytest.approx(1.0)
    assert F.note_agreement(perf, truth, ms, notes, 0.0, 16.0, shift=1.0) < 0.5


def test_set_overrides_a_follower_constant_and_refuses_anything_else(monkeypatch) -> None:
    """``--set NAME=VALUE`` (bench.follow, bench.realdev_follow): a numeric constant of
    scoreid.identify.follow takes its type; a name that is not one, a bool, or no '=' is a clear
    error, never a traceback."""
    from bench.follow import follower_overrides
    from scoreid.identify import follow

    monkeypatch.setattr(follow, "GUARD_JUMP_PROB", follow.GUARD_JUMP_PROB)  # restored after the test
    monkeypatch.setattr(follow, "CANDIDATES", follow.CANDIDATES)
    got = follower_overrides(["GUARD_JUMP_PROB=0.0002", "CANDIDATES=5"])
    assert got == {"GUARD_JUMP_PROB": 0.0002, "CANDIDATES": 5}
    assert follow.GUARD_JUMP_PROB == 0.0002 and follow.CANDIDATES == 5 and isinstance(follow.CANDIDATES, int)
    for bad in ("NOPE=1", "GUARD_JUMP_PROB", "KINDS=1", "np=1"):
        with pytest.raises(SystemExit, match="not NAME=VALUE of a numeric constant"):
            follower_overrides([bad])
