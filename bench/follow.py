"""Benchmark: score following — how far the reported position is from where the music is.

``python -m bench.follow --model models/default --data DATA/corpus [--split test] [--kinds best,hmm,tempo,guard]
[--max-seconds 60] [--out bench/results/follow.json]``

1. Builds the sheet library of the split's pieces from the ``shifted`` look's page images (Petaluma,
   never seen in training; staff systems from pixels, as a user's library) — ``bench/identify.py``.
2. Streams, per piece, the ``shifted`` performance (csound soundfont, tempo outside the training
   range, room and noise) through :class:`scoreid.identify.stream.Identifier` at ``--hop`` (the
   default hop), as four streams: from the first bar, from the middle, a *repeat* (the music jumps back: 10–50 % of the
   piece, then 25–60 %) and a *cut* (0–30 %, then 60–90 %); each at most ``--max-seconds``.
3. Truth: every aligned notehead has its strip x (corpus render) and its onset frame in the
   performance, so the true strip position at every instant is the interpolation between onsets,
   and a reported strip position maps back to the performance time at which the music is there.
   The library's strip is matched to the render's system by system. A performance plays repeats
   (the synthesised MIDI expands them) but a notehead is aligned with its first onset only, so the
   truth is known only where aligned onsets lie within ``KNOWN_GAP_S`` on both sides; hops in a
   repeated pass (no aligned onsets) are left out and counted (``unknown_truth``).
4. Per hop where the top-1 piece is right: error = performance time of the reported position minus
   the time now (negative: behind). Reports the share of hops within 0.5 / 1 / 2 s, in the right
   system, the median |error|, the lag (median signed error), spurious backward jumps per minute
   (the reported position moves back by more than 1 s of music where the music did not jump), and
   the time to lock on (from the start and from each splice until the error stays within 1 s for
   2 s). One row per follower kind (``best`` = the naive best hit, ``hmm`` = the follower before,
   ``tempo`` = the follower of 2026-12-04, ``guard`` = ``tempo`` holding off look-alike passages);
   writes JSON and a PNG of true vs followed position for a few streams.

The audio encoder's outputs are cached per window, so every kind sees the same embeddings and
identity; only the follower differs. Tune on ``--split valid``, report on ``test`` once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.identify import build_library
from bench.report import cpu_name, write_result
from scoreid import contract as C
from scoreid.identify import follow
from scoreid.identify.engine import DEFAULT_HOP_S
from scoreid.identify.stream import AudioEncoder, Identifier
from scoreid.inference import load_model
from scoreid.library.store import Library
from trainer.corpus.store import Corpus

ROOT = Path(__file__).resolve().parents[1]

SPLICES = {  # stream kind: segments as fractions of the performance
    "start": [(0.0, 1.0)],
    "middle": [(0.5, 1.0)],
    "repeat": [(0.10, 0.50), (0.25, 0.60)],
    "cut": [(0.0, 0.30), (0.60, 0.90)],
}
LOCK_S = 1.0  #: lock-on: error within this ...
LOCK_HOLD_S = 2.0  #: ... for this long
BACK_JUMP_S = 1.0  #: a backward move of the reported position by more than this is a jump
KNOWN_GAP_S = 3.0  #: the truth at t is known when aligned onsets lie within this before and after


class CachedEncoder:
    """The audio encoder with a per-window memo (the same window gives the same embedding)."""

    def __init__(self, enc: AudioEncoder) -> None:
        self.enc = enc
        self.memo: dict[bytes, np.ndarray] = {}

    def embed_audio(self, x: np.ndarray) -> np.ndarray:
        key = np.ascontiguousarray(x, np.float32).tobytes()
        if key not in self.memo:
            self.memo[key] = self.enc.embed_audio(x)
        return self.memo[key]


@dataclass
class Truth:
    """Performance time <-> render strip x of one (render, performance) pair."""

    t: np.ndarray  # onset times (s), ascending
    x: np.ndarray  # strip x at those onsets, made non-decreasing
    offsets: np.ndarray  # the render's system offsets on its strip
    system_page: np.ndarray  # page of each of the render's systems

    def x_at(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.t, self.x)

    def t_at(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.x, self.t)

    def system(self, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, x, side="right") - 1

    def known(self, t: float) -> bool:
        """Aligned onsets within KNOWN_GAP_S before and after ``t`` (not in a repeated pass)."""
        k = int(np.searchsorted(self.t, t))
        before = k > 0 and t - self.t[k - 1] <= KNOWN_GAP_S
        after = k < len(self.t) and self.t[k] - t <= KNOWN_GAP_S
        return bool(before and after)


def truth_of(piece, render_idx: int, perf_idx: int) -> Truth | None:  # type: ignore[no-untyped-def]
    r, p = piece.renders[render_idx], piece.performances[perf_idx]
    ok = np.isfinite(r.note_x) & np.isfinite(p.note_frame)
    if ok.sum() < 8:
        return None
    t = p.note_frame[ok].astype(np.float64) / C.FPS
    x = r.note_x[ok].astype(np.float64)
    order = np.lexsort((x, t))
    t, x = t[order], np.maximum.accumulate(x[order])
    t, keep = np.unique(t, return_index=True)
    return Truth(
        t, x[keep], np.asarray(r.system_offsets, np.float64), np.asarray(r.system_boxes, np.float64)[:, 0]
    )


def library_to_render(lib: Library, pid: str, truth: Truth) -> tuple[np.ndarray, np.ndarray] | None:
    """System offsets (library strip, render strip) when the library found the render's systems."""
    lib_off = np.asarray(lib.pieces[pid]["system_offsets"], np.float64)
    if len(lib_off) != len(truth.offsets):
        return None
    return lib_off, truth.offsets


def to_render_x(sx: float, offs: tuple[np.ndarray, np.ndarray]) -> float:
    lo, ro = offs
    k = int(np.clip(np.searchsorted(lo, sx, side="right") - 1, 0, len(lo) - 1))
    return float(ro[k] + (sx - lo[k]))


def segments(n_frames: int, kind: str, max_frames: int) -> list[tuple[int, int]]:
    out, total = [], 0
    for a, b in SPLICES[kind]:
        s, e = int(a * n_frames), int(b * n_frames)
        e = min(e, s + max_frames - total)
        if e > s:
            out.append((s, e))
            total += e - s
    return out


def run_stream(
    lib: Library,
    enc,
    pid: str,
    spec: np.ndarray,
    segs: list[tuple[int, int]],
    truth: Truth,
    offs: tuple[np.ndarray, np.ndarray],
    kind: str,
    hop_s: float,
) -> dict:  # type: ignore[no-untyped-def]
    """Stream the spliced spectrogram; per hop: time, right, true / reported perf time and system."""
    frames = np.concatenate([spec[s:e] for s, e in segs])
    src = np.concatenate([np.arange(s, e) for s, e in segs])  # stream frame -> performance frame
    splice_at = np.cumsum([e - s for s, e in segs])[:-1] / C.FPS
    ident = Identifier(lib, enc, hop_s=hop_s, follower=kind)
    step = max(1, int(round(hop_s * C.FPS)))
    rows = []
    for s in range(0, len(frames), step):
        for u in ident.push_frames(frames[s : s + step]):
            f_now = int(round(u.t * C.FPS)) - 1
            t_true = float(src[min(max(f_now, 0), len(src) - 1)]) / C.FPS
            right = bool(u.ranking) and u.ranking[0][0] == pid
            pos = u.positions.get(pid)
            known = truth.known(t_true)
            true_sys = float(truth.system(truth.x_at(np.array([t_true])))[0]) if known else np.nan
            true_page = float(truth.system_page[int(true_sys)]) if known else np.nan
            if pos is None or not known:
                rows.append(
                    (u.t, right, t_true if known else np.nan, np.nan, np.nan, true_sys, np.nan, true_page)
                )
                continue
            rx = to_render_x(float(pos.strip_x), offs)
            rows.append(
                (
                    u.t,
                    right,
                    t_true,
                    float(truth.t_at(np.array([rx]))[0]),
                    float(truth.system(np.array([rx]))[0]),
                    true_sys,
                    float(pos.show_page),
                    true_page,
                )
            )
    a = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return {
        "t": a[:, 0],
        "right": a[:, 1].astype(bool),
        "t_true": a[:, 2],
        "t_rep": a[:, 3],
        "sys_rep": a[:, 4],
        "sys_true": a[:, 5],
        "show_page": a[:, 6],
        "page_true": a[:, 7],
        "splices": splice_at.tolist(),
    }


def page_turns(r: dict, truth: Truth) -> list[dict]:  # type: ignore[type-arg]
    """Every page the true position leaves for the next one (T_leave: the first hop on the next page)
    and when the reported page to show turned to it (T_turn), with the time the music entered the
    page's last system (T_last). A turn after T_leave is late; one before T_last is too early."""
    out = []
    pt, sys_true, t, show = r["page_true"], r["sys_true"], r["t"], r["show_page"]
    for i in range(1, len(t)):
        if not (np.isfinite(pt[i]) and np.isfinite(pt[i - 1]) and pt[i] == pt[i - 1] + 1):
            continue
        page = int(pt[i - 1])
        last_sys = int(np.flatnonzero(truth.system_page == page).max())
        back = [j for j in range(i - 1, -1, -1) if np.isfinite(sys_true[j]) and sys_true[j] == last_sys]
        t_last = float(t[back[-1]]) if back else float(t[i - 1])
        window = np.flatnonzero((t >= t_last - 10.0) & (t <= t[i] + 10.0) & r["right"])
        turned = [j for j in window if np.isfinite(show[j]) and show[j] >= page + 1]
        t_turn = float(t[turned[0]]) if turned else float("nan")
        out.append({"t_leave": float(t[i]), "t_last": t_last, "t_turn": t_turn})
    return out


def lock_on(ts: np.ndarray, ok: np.ndarray, t0: float, hop_s: float) -> float:
    """Seconds from ``t0`` until the error stays within LOCK_S for LOCK_HOLD_S (inf: never)."""
    need = int(round(LOCK_HOLD_S / hop_s))
    idx = np.flatnonzero(ts >= t0)
    for k in range(len(idx) - need + 1):
        if ok[idx[k : k + need]].all():
            return float(ts[idx[k]] - t0)
    return float("inf")


def stream_metrics(r: dict, hop_s: float, truth: Truth | None = None) -> dict:  # type: ignore[type-arg]
    ok_hop = r["right"] & np.isfinite(r["t_rep"])
    unknown = int(np.sum(r["right"] & ~np.isfinite(r["t_true"])))
    err = r["t_rep"] - r["t_true"]
    within1 = np.where(ok_hop, np.abs(err) <= LOCK_S, False)
    # spurious backward jumps: the reported music time moves back by > BACK_JUMP_S where the truth
    # moved forward (a splice back is a real jump)
    rep, tru = r["t_rep"], r["t_true"]
    d_rep, d_tru = np.diff(rep), np.diff(tru)
    both = ok_hop[1:] & ok_hop[:-1]
    spurious = int(np.sum(both & (d_rep < -BACK_JUMP_S) & (d_tru > -BACK_JUMP_S)))
    starts = [float(r["t"][0]) - hop_s, *r["splices"]] if len(r["t"]) else []
    return {
        "err": err[ok_hop],
        "sys_ok": (r["sys_rep"] == r["sys_true"])[ok_hop],
        "hops": int(ok_hop.sum()),
        "spurious_back": spurious,
        "minutes": float(ok_hop.sum() * hop_s / 60.0),
        "unknown_truth": unknown,
        "lock_on": [lock_on(r["t"], within1, t0, hop_s) for t0 in starts],
        "turns": page_turns(r, truth) if truth is not None else [],
    }


def summarise(ms: list[dict]) -> dict:  # type: ignore[type-arg]
    err = np.concatenate([m["err"] for m in ms]) if ms else np.zeros(0)
    sys_ok = np.concatenate([m["sys_ok"] for m in ms]) if ms else np.zeros(0, bool)
    minutes = sum(m["minutes"] for m in ms)
    locks = np.array([x for m in ms for x in m["lock_on"]], np.float64)
    finite = locks[np.isfinite(locks)]
    return {
        "hops": int(len(err)),
        "within_0_5s": float(np.mean(np.abs(err) <= 0.5)) if len(err) else float("nan"),
        "within_1s": float(np.mean(np.abs(err) <= 1.0)) if len(err) else float("nan"),
        "within_2s": float(np.mean(np.abs(err) <= 2.0)) if len(err) else float("nan"),
        "right_system": float(np.mean(sys_ok)) if len(sys_ok) else float("nan"),
        "median_abs_error_s": float(np.median(np.abs(err))) if len(err) else float("nan"),
        "lag_s": float(np.median(err)) if len(err) else float("nan"),
        "spurious_back_per_min": float(sum(m["spurious_back"] for m in ms) / max(minutes, 1e-9)),
        "lock_on_median_s": float(np.median(finite)) if len(finite) else float("inf"),
        "locked": float(np.isfinite(locks).mean()) if len(locks) else float("nan"),
        "minutes_followed": round(minutes, 2),
        "unknown_truth_hops": int(sum(m["unknown_truth"] for m in ms)),
        **turn_summary([tr for m in ms for tr in m.get("turns", [])]),
    }


def turn_summary(turns: list[dict]) -> dict:  # type: ignore[type-arg]
    lead = np.array([tr["t_leave"] - tr["t_turn"] for tr in turns], np.float64)
    done = np.isfinite(lead)
    early = np.array([tr["t_turn"] < tr["t_last"] for tr in turns], bool) & done
    return {
        "page_turns": len(turns),
        "turn_lead_median_s": float(np.median(lead[done])) if done.any() else float("nan"),
        "turns_late": float(np.mean(done & (lead < 0))) if turns else float("nan"),
        "turns_too_early": float(np.mean(early)) if turns else float("nan"),
        "turns_missed": float(np.mean(~done)) if turns else float("nan"),
    }


def add_set_argument(p: argparse.ArgumentParser) -> None:
    """``--set NAME=VALUE`` (repeatable): :func:`follower_overrides` reads it."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a follower constant for this run (scoreid.identify.follow, e.g. START_PRIOR=0)",
    )


def follower_overrides(items: list[str]) -> dict[str, float]:
    """``--set NAME=VALUE``: set the follower's numeric constant NAME (a module-level number of
    :mod:`scoreid.identify.follow`) for this run; the values set."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        current = getattr(follow, name, None)
        if not sep or not name.isupper() or isinstance(current, bool) or not isinstance(current, int | float):
            raise SystemExit(
                f"--set {item!r}: not NAME=VALUE of a numeric constant of scoreid.identify.follow"
            )
        out[name] = type(current)(float(value))
        setattr(follow, name, out[name])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--data", type=Path, required=True, help="corpus directory (trainer/run.py corpus build)")
    p.add_argument("--split", default="test")
    p.add_argument("--kinds", default="best,hmm,tempo,guard", help="follower kinds to compare")
    p.add_argument(
        "--streams", default="start,middle,repeat,cut", help=f"stream kinds ({', '.join(SPLICES)})"
    )
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--limit", type=int, default=0, help="at most this many pieces (0: all)")
    p.add_argument("--plots", type=int, default=4, help="streams drawn in the PNG")
    p.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "scoreid-bench-follow"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "follow.json")
    add_set_argument(p)
    args = p.parse_args(argv)
    overrides = follower_overrides(args.set)
    kinds = [k for k in args.kinds.split(",") if k]
    stream_kinds = [k for k in args.streams.split(",") if k]
    corpus = Corpus(args.data)
    pids = corpus.ids(args.split)[: args.limit or None]
    t0 = time.perf_counter()
    lib = build_library(
        corpus, pids, "shifted", args.model, args.work / args.split, None
    )  # one library per split
    enc = CachedEncoder(load_model(args.model, threads=1))
    per_kind: dict[str, list[dict]] = {k: [] for k in kinds}  # type: ignore[type-arg]
    per_stream: dict[str, list[dict]] = {k: [] for k in kinds}  # type: ignore[type-arg]
    drawn: list[dict] = []  # type: ignore[type-arg]
    skipped = []
    tty = sys.stderr.isatty()
    for n, pid in enumerate(pids):
        if pid not in lib.pieces:
            skipped.append((pid, "not in library"))
            continue
        piece = corpus.load(pid)
        ri = next((i for i, r in enumerate(piece.renders) if r.condition == "shifted"), None)
        pj = next((j for j, q in enumerate(piece.performances) if q.condition == "shifted"), None)
        if ri is None or pj is None:
            skipped.append((pid, "no shifted render/performance"))
            continue
        truth = truth_of(piece, ri, pj)
        offs = library_to_render(lib, pid, truth) if truth is not None else None
        if truth is None or offs is None:
            skipped.append(
                (pid, "library systems differ from the render's" if truth else "too few aligned notes")
            )
            continue
        spec = piece.performances[pj].spec.astype(np.float32)
        for sk in stream_kinds:
            segs = segments(len(spec), sk, int(args.max_seconds * C.FPS))
            if sum(e - s for s, e in segs) < C.AUDIO_WINDOW_FRAMES:
                continue
            for kind in kinds:
                r = run_stream(lib, enc, pid, spec, segs, truth, offs, kind, args.hop)
                m = stream_metrics(r, args.hop, truth)
                per_kind[kind].append(m)
                per_stream[kind].append(
                    {
                        "piece": pid,
                        "stream": sk,
                        **{k: v for k, v in m.items() if k != "err" and k != "sys_ok"},
                    }
                )
                if len(drawn) < args.plots * len(kinds) and sk in ("start", "repeat"):
                    drawn.append(
                        {
                            "piece": pid,
                            "stream": sk,
                            "kind": kind,
                            **{k: np.asarray(v).tolist() for k, v in r.items()},
                        }
                    )
        msg = f"follow: {n + 1}/{len(pids)} {pid} ({time.perf_counter() - t0:.0f} s)"
        print(("\r" + msg) if tty else msg, end="" if tty else "\n", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    table = {k: summarise(v) for k, v in per_kind.items()}
    by_stream = {
        k: {
            sk: summarise([m for m, s in zip(per_kind[k], per_stream[k]) if s["stream"] == sk])
            for sk in stream_kinds
        }
        for k in kinds
    }
    result = {
        "kinds": table,
        "by_stream": by_stream,
        "split": args.split,
        "condition": "shifted",
        "pieces": len(pids) - len(skipped),
        "skipped": skipped,
        "hop_s": args.hop,
        "max_seconds": args.max_seconds,
        "follower_overrides": overrides,
        "library_pieces": len(lib.piece_ids),
        "library_windows": len(lib),
        "model": str(args.model),
        "wall_s": round(time.perf_counter() - t0, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_name(),
        "targets": {
            "within_1s": 0.90,
            "within_0_5s": 0.75,
            "right_system": 0.97,
            "spurious_back_per_min": 0.2,
            "lag_s": 0.5,
        },
    }
    print(
        f"score following ({args.split}/shifted, {result['pieces']} pieces, streams {','.join(stream_kinds)}, "
        f"hops where the top-1 piece is right)"
    )
    print(
        "| follower | hops | within 0.5 s | within 1 s | within 2 s | right system | median abs err s | lag s "
        "| back jumps/min | lock-on s | page turns | turn lead s | late | too early | missed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, r in table.items():
        print(
            f"| {k} | {r['hops']} | {r['within_0_5s']:.1%} | {r['within_1s']:.1%} | {r['within_2s']:.1%} | "
            f"{r['right_system']:.1%} | {r['median_abs_error_s']:.2f} | {r['lag_s']:+.2f} | "
            f"{r['spurious_back_per_min']:.2f} | {r['lock_on_median_s']:.1f} | {r['page_turns']} | "
            f"{r['turn_lead_median_s']:.1f} | {r['turns_late']:.0%} | {r['turns_too_early']:.0%} | "
            f"{r['turns_missed']:.0%} |"
        )
    plot(drawn, args.out.with_suffix(".png"))
    write_result(args.out, result)
    return 0


def plot(drawn: list[dict], path: Path) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = sorted(
        {(d["piece"], d["stream"]) for d in drawn}, key=lambda s: [x["piece"] for x in drawn].index(s[0])
    )
    if not streams:
        return
    fig, axes = plt.subplots(len(streams), 1, figsize=(10, 2.6 * len(streams)), squeeze=False)
    colours = {"best": "tab:orange", "hmm": "tab:blue", "tempo": "tab:red"}
    for ax, (pid, sk) in zip(axes[:, 0], streams):
        first = True
        for d in drawn:
            if (d["piece"], d["stream"]) != (pid, sk):
                continue
            t = np.asarray(d["t"])
            if first:
                ax.plot(t, d["t_true"], "k-", lw=2, alpha=0.35, label="true")
                first = False
            rep = np.where(np.asarray(d["right"]), np.asarray(d["t_rep"], float), np.nan)
            ax.plot(t, rep, ".", ms=3, color=colours.get(d["kind"], None), label=d["kind"])
        ax.set_title(f"{pid} ({sk})", fontsize=9)
        ax.set_ylabel("music at (s of perf.)")
        ax.legend(fontsize=7, loc="upper left", markerscale=3)
    axes[-1, 0].set_xlabel("seconds of audio streamed")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
