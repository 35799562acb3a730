"""Replay a score follower alone on dumped real-dev excerpts: the follower's accuracy given the piece.

    python -m bench.realdev_follow --per-composer 12 --dump-tracks /work/runs/follow-tracks   # once
    python -m bench.follow_replay /work/runs/follow-tracks [--kinds guard,tempo] [--set NAME=VALUE]
        [--out FILE.json]

``bench.realdev_follow --dump-tracks DIR`` writes, per excerpt, what the engine gave the true piece's
track at every voting hop (the audio window's cosine similarities to the piece's sheet windows and
its library null) with the excerpt's truth. This replays one :class:`scoreid.identify.follow.PieceTrack`
of each ``--kinds`` over those hops — from the excerpt's first window, as the track of a piece that
is a candidate from the start — and scores the reported position as ``bench.realdev_follow`` does
(time error to the nearest instant the performer was there; right system / page; spurious back
jumps per minute), over every hop with a true position: the follower given the right piece,
without identification (which moves the engine's own numbers: those are ``bench.realdev_follow``'s).

A run over a hundred excerpts takes seconds instead of the benchmark's minutes, so follower designs
and constants (``--set``, as in ``bench.realdev_follow``) can be compared quickly; a change is then
confirmed on the full benchmark.

``--decompose`` splits the follower's error in two (:func:`decompose`): where its audio windows are
matched (the music at the window's centre, ``lag_s`` before now: the best single sheet window, and
the filter's matched position) and the step from there to "now" (the matched position moved on at the
track's fitted speed for ``lag_s``; scored from the *true* position at ``t - lag_s``, so only the
extrapolation errs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.follow import add_set_argument, follower_overrides
from bench.realdev_follow import (
    GRID_S,
    HEARD_BINS,
    accuracy,
    grid_points,
    spurious_back_jumps,
    time_error,
    within_shares,
)
from bench.report import cpu_name, write_result
from scoreid.identify.follow import KINDS, PieceTrack


def load_tracks(folder: Path) -> list[dict[str, Any]]:
    """The dumped excerpts of ``folder`` (sorted by name)."""
    out = []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as z:
            d = {k: z[k] for k in z.files}
        for k in ("composer", "work", "performer"):
            d[k] = str(d[k])
        for k in ("start_s", "hop_s", "stride", "lag_s"):
            d[k] = float(d[k])
        d["name"] = f.stem
        out.append(d)
    return out


def grid_index(d: dict[str, Any], t: float) -> int:
    """The truth's grid point nearest performance time ``t`` (clipped)."""
    return int(grid_points(d["grid_t"], t))


def written_at(d: dict[str, Any], x: float) -> float:
    """The written position (measure + fraction) at strip x, from the dumped table."""
    return float(d["table_w"][table_index(d, x)])


def table_index(d: dict[str, Any], x: float) -> int:
    tx = d["table_x"]
    step = float(tx[1] - tx[0]) if len(tx) > 1 else 1.0
    return int(np.clip(round((x - tx[0]) / step), 0, len(tx) - 1))


def followed(d: dict[str, Any], kind: str) -> Iterator[tuple[float, float, np.ndarray, PieceTrack]]:
    """One excerpt's voting hops through a fresh track of ``kind``, from its first window: per hop
    the seconds heard, the performance time, the hop's similarities and the track just updated."""
    track = PieceTrack(d["strip_x"], d["stride"], d["hop_s"], kind, d["lag_s"])
    for k, (t, sims, null) in enumerate(zip(d["t"], d["sims"], d["null"])):
        track.update(float(t), sims, None if not np.isfinite(null) else float(null), first=k == 0)
        yield float(t), d["start_s"] + float(t), sims, track


def replay(d: dict[str, Any], kind: str) -> dict[str, np.ndarray]:
    """One excerpt through a fresh track of ``kind``: per voting hop heard s, the true and reported
    written position, the time error, true / reported page and system."""
    rows = []
    for t, abs_t, _, track in followed(d, kind):
        x = track.position_x()
        g = grid_index(d, abs_t)
        wt = d["grid_w"][g] if abs(d["grid_t"][g] - abs_t) <= GRID_S else np.nan
        if x is None:
            rows.append((t, wt, np.nan, np.nan, d["grid_page"][g], d["grid_sys"][g], np.nan, np.nan))
            continue
        i = table_index(d, x)
        wr = float(d["table_w"][i])
        err = time_error(d["grid_w"], d["grid_t"], abs_t, wr) if np.isfinite(wt) else np.nan
        rows.append(
            (t, wt, wr, err, d["grid_page"][g], d["grid_sys"][g], d["table_page"][i], d["table_sys"][i])
        )
    a = np.array(rows, np.float64).reshape(-1, 8)
    keys = ("heard", "w_true", "w_rep", "err", "page_true", "sys_true", "page_rep", "sys_rep")
    return {k: a[:, i] for i, k in enumerate(keys)}


def decompose(tracks: list[dict[str, Any]], kind: str) -> dict[str, dict[str, float]]:
    """Shares of hops within each tolerance of: ``window`` the best-matching single sheet window and
    ``matched`` the filter's matched position, both against the music at ``t - lag_s`` (the audio
    window's matched point); ``now`` the reported position against ``t``; ``extrapolation`` the
    true position at ``t - lag_s`` moved on at the track's fitted speed for ``lag_s``, against ``t``
    (hops once the track has fitted a speed)."""
    errs: dict[str, list[float]] = {"window": [], "matched": [], "now": [], "extrapolation": []}
    for d in tracks:
        gt, lag = d["grid_t"], d["lag_s"]
        for _, now, sims, track in followed(d, kind):
            if not np.isfinite(d["grid_w"][grid_index(d, now)]):
                continue
            x_now, x_mode = track.position_x(), track.mode
            if x_now is None or x_mode is None:
                continue
            errs["window"].append(
                time_error(d["grid_w"], gt, now - lag, written_at(d, float(d["strip_x"][np.argmax(sims)])))
            )
            errs["matched"].append(time_error(d["grid_w"], gt, now - lag, written_at(d, x_mode[1])))
            errs["now"].append(time_error(d["grid_w"], gt, now, written_at(d, x_now)))
            centre = d["grid_strip"][grid_index(d, now - lag)]
            if track._speed_known() and np.isfinite(centre):
                errs["extrapolation"].append(
                    time_error(d["grid_w"], gt, now, written_at(d, centre + track.speed * lag))
                )
    out = {}
    for name, e in errs.items():
        a = np.abs(np.asarray(e, np.float64))
        a = a[np.isfinite(a)]
        out[name] = {"hops": int(len(a))} | within_shares(a)
    return out


def score(
    runs: list[tuple[dict[str, Any], dict[str, np.ndarray]]], lo: float = 0.0, hi: float = np.inf
) -> dict[str, Any]:
    """Accuracy over the hops heard in [lo, hi) s that have a true position."""
    err, sys_ok, page_ok, minutes, spur = [], [], [], 0.0, 0
    for d, h in runs:
        ok = (h["heard"] >= lo) & (h["heard"] < hi) & np.isfinite(h["w_true"]) & np.isfinite(h["err"])
        err.append(h["err"][ok])
        sys_ok.append(((h["page_rep"] == h["page_true"]) & (h["sys_rep"] == h["sys_true"]))[ok])
        page_ok.append((h["page_rep"] == h["page_true"])[ok])
        minutes += ok.sum() * d["hop_s"] / 60.0
        idx = np.flatnonzero(ok)
        if len(idx) > 1:
            grid_heard = d["grid_t"] - d["start_s"]
            spur += spurious_back_jumps(h["heard"][idx], h["w_rep"][idx], grid_heard, d["grid_w"])
    return {"excerpts": len(runs)} | accuracy(err, sys_ok, page_ok, spur, minutes)


def row(name: str, m: dict[str, Any]) -> str:
    def pct(v: float) -> str:
        return f"{100 * v:.1f} %" if np.isfinite(v) else "–"

    return (
        f"| {name} | {m['hops']} | {pct(m['within_0_5s'])} | {pct(m['within_1s'])} | {pct(m['within_2s'])} "
        f"| {pct(m['within_5s'])} | {pct(m['right_system'])} | {pct(m['right_page'])} "
        f"| {m['median_abs_error_s']:.2f} | {m['lag_s']:+.2f} | {m['spurious_back_per_min']:.2f} |"
    )


HEADER = (
    "| {} | hops | within 0.5 s | within 1 s | within 2 s | within 5 s | right system | right page "
    "| median \\|err\\| s | lag s | spurious back jumps / min |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tracks", type=Path, help="a folder of bench.realdev_follow --dump-tracks")
    p.add_argument("--kinds", default="guard", help=f"follower kinds to replay ({', '.join(KINDS)})")
    p.add_argument("--by-composer", action="store_true", help="also a table by composer (first kind)")
    p.add_argument(
        "--decompose",
        action="store_true",
        help="also split the error into matching and extrapolation to now (first kind)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the numbers here (JSON)")
    add_set_argument(p)
    args = p.parse_args(argv)
    overrides = follower_overrides(args.set)
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise SystemExit(f"bench/follow_replay: unknown kinds {bad} (of {KINDS})")
    t0 = time.perf_counter()
    tracks = load_tracks(args.tracks)
    if not tracks:
        raise SystemExit(f"bench/follow_replay: no dumped excerpts in {args.tracks}")
    result: dict[str, Any] = {"tracks": str(args.tracks), "overrides": overrides, "kinds": {}}
    print(
        f"the follower given the right piece: {len(tracks)} excerpts"
        + (f"; set {overrides}" if overrides else "")
        + "\n"
    )
    print(HEADER.format("follower"))
    runs_of = {}
    for kind in kinds:
        runs = [(d, replay(d, kind)) for d in tracks]
        runs_of[kind] = runs
        m = score(runs)
        m["by_heard"] = {f"{lo:g}-{hi:g}": score(runs, lo, hi) for lo, hi in HEARD_BINS}
        m["by_composer"] = {
            c: score([r for r in runs if r[0]["composer"] == c])
            for c in sorted({d["composer"] for d in tracks})
        }
        result["kinds"][kind] = m
        print(row(kind, m))
    if args.by_composer:
        first = result["kinds"][kinds[0]]
        print(f"\nby composer ({kinds[0]}):\n")
        print(HEADER.format("composer"))
        for c, m in first["by_composer"].items():
            print(row(c, m))
        print(f"\nby seconds heard ({kinds[0]}):\n")
        print(HEADER.format("heard s"))
        for c, m in first["by_heard"].items():
            if m["hops"]:
                print(row(c, m))
    if args.decompose:
        parts = decompose(tracks, kinds[0])
        result["decompose"] = parts
        lag = sorted({round(d["lag_s"], 3) for d in tracks})
        print(f"\nwhere the error arises ({kinds[0]}; lag {', '.join(f'{x:g}' for x in lag)} s):\n")
        print("| position | against | hops | within 0.5 s | within 1 s | within 2 s | within 5 s |")
        print("|---|---|---:|---:|---:|---:|---:|")
        against = {
            "window": "t - lag",
            "matched": "t - lag",
            "now": "t",
            "extrapolation": "t",
        }
        for name, m in parts.items():
            print(
                f"| {name} | {against[name]} | {m['hops']} | "
                + " | ".join(
                    f"{100 * m[k]:.1f} %" for k in ("within_0_5s", "within_1s", "within_2s", "within_5s")
                )
                + " |"
            )
    print(f"\nwall {time.perf_counter() - t0:.1f} s; {cpu_name()}")
    if args.out is not None:
        write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
