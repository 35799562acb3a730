"""Fitting the calibrated identity on real performances at several library sizes, and checking it.

    python -m bench.identity_fit DUMP.json [DUMP.json ...] [--features NAME] [--folds 2]
        [--max-wrong 0.01] [--shipped] [--out bench/results/identity-fit.json]

``DUMP.json`` is written by ``python -m bench.realdev --sizes 40,200,all --open-set --dump DUMP.json``:
every hop of every stream (in-library streams at each size and out-of-library ones, whose work was
left out of the library) with the engine's followed candidates and its identity evidence. Each hop
becomes one example of :class:`scoreid.identify.confidence.Evidence` (built as the engine builds it,
:func:`evidence_of_hop`), labelled by whether the engine's top piece is the piece playing (never
for an out-of-library stream).

The logistic model of :mod:`scoreid.identify.confidence` (``--features``: which of its feature
sets) is fitted on the hops that pass its gates, with the works split in ``--folds`` folds by a hash
of the work id: each fold's streams are scored with the model fitted on the others (no work is
judged by a model that saw it), so the numbers are what a new work gets. The threshold is the lowest
probability at which, over all sizes, at most ``--max-wrong`` of the in-library streams end with a
wrong identity and at most ``--max-wrong`` x 2 of the out-of-library streams end named. Prints per
size and length: identity right / wrong at the end, ever wrong, median time to identity, and
out-of-library streams named; the coefficients fitted on every work (what goes into
``confidence.py``). Writes JSON. ``--shipped``: no fit — the shipped ``COEF`` and ``THRESHOLD`` of
:mod:`scoreid.identify.confidence` replayed on the streams (what the engine names with them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.openset import fit_logistic
from bench.report import cpu_name, write_result
from scoreid.identify import confidence as K
from scoreid.identify.engine import SEQUENCE_WEIGHT, sequence_order

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stream:
    work: str
    composer: str
    size: int
    length_s: float
    in_library: bool
    t: np.ndarray  #: hop times
    top: list[str]  #: the engine's top piece per hop
    ev: list[K.Evidence]
    label: np.ndarray  #: top piece is the piece playing


def evidence_of_hop(cands: Sequence[Sequence[Any]], ev: Sequence[float]) -> tuple[str | None, K.Evidence]:
    """The engine's top piece and its :class:`K.Evidence` from one dumped hop: the followed
    candidates ``[piece, tally, evidence (piece null), coherence, evidence (library null)]`` in the
    tally's order, and ``[windows, share, log ratio, coherence, stillness]``."""
    order = sequence_order([(c[0], c[1], c[4]) for c in cands], SEQUENCE_WEIGHT)
    top = order[0][0] if order else None
    seq = order[0][2] if order else 0.0
    rival = max((c[2] for c in order[1:]), default=0.0)
    windows, share, log_ratio, coherence, stillness = ev
    return top, K.Evidence(int(windows), share, log_ratio, coherence, stillness, seq, seq - rival)


def read_streams(paths: Sequence[Path]) -> list[Stream]:
    out = []
    for path in paths:
        for d in json.loads(Path(path).read_text()):
            tops, evs, ts = [], [], []
            for t, cands, ev, _identity, _p in d["hops"]:
                top, e = evidence_of_hop(cands, ev)
                tops.append(top or "")
                evs.append(e)
                ts.append(t)
            label = np.array([d["in_library"] and p == d["truth"] for p in tops], bool)
            out.append(
                Stream(
                    d["truth"],
                    d.get("composer", ""),
                    int(d["size"]),
                    float(d["length_s"]),
                    bool(d["in_library"]),
                    np.array(ts),
                    tops,
                    evs,
                    label,
                )
            )
    return out


def fold_of(work: str, folds: int) -> int:
    return int.from_bytes(hashlib.sha256(work.encode()).digest()[:4], "little") % folds


def design(streams: Sequence[Stream], features: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of the hops that pass the gates (the model sees only those)."""
    xs, ys = [], []
    for s in streams:
        for e, y in zip(s.ev, s.label):
            if K.gated(e):
                xs.append(K.features(e, features))
                ys.append(y)
    if not xs:
        return np.zeros((0, len(K.FEATURE_SETS[features]))), np.zeros(0)
    return np.array(xs), np.array(ys, float)


def probabilities(s: Stream, coef: np.ndarray, features: str) -> np.ndarray:
    return np.array([K.probability(e, tuple(coef), features) for e in s.ev])


@dataclass
class Outcome:
    right: bool  #: ends identified as the piece playing
    wrong: bool  #: ends identified as another piece
    ever_wrong: bool
    first_right_s: float | None


def outcome(s: Stream, p: np.ndarray, threshold: float) -> Outcome:
    named = p >= threshold
    right = named & s.label
    wrong = named & ~s.label
    first = float(s.t[np.argmax(right)]) if right.any() else None
    return Outcome(bool(right[-1]), bool(wrong[-1]), bool(wrong.any()), first)


def table(streams: Sequence[Stream], probs: Sequence[np.ndarray], threshold: float) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(s.size, s.length_s, s.in_library) for s in streams})
    for size, length, inside in keys:
        idx = [
            i for i, s in enumerate(streams) if (s.size, s.length_s, s.in_library) == (size, length, inside)
        ]
        outs = [outcome(streams[i], probs[i], threshold) for i in idx]
        firsts = [o.first_right_s for o in outs if o.right and o.first_right_s is not None]
        rows.append(
            {
                "size": size,
                "length_s": length,
                "in_library": inside,
                "streams": len(idx),
                "right": round(float(np.mean([o.right for o in outs])), 4),
                "wrong": round(float(np.mean([o.wrong for o in outs])), 4),
                "ever_wrong": round(float(np.mean([o.ever_wrong for o in outs])), 4),
                "median_time_to_identity_s": round(float(np.median(firsts)), 2) if firsts else None,
            }
        )
    return rows


def choose_threshold(streams: Sequence[Stream], probs: Sequence[np.ndarray], max_wrong: float) -> float:
    """The lowest threshold (0.05 steps) at which every size keeps in-library wrong identities at the
    end <= ``max_wrong`` and out-of-library streams named at the end <= 2 x ``max_wrong``."""
    for th in np.round(np.arange(0.3, 0.996, 0.05), 2):
        rows = table(streams, probs, float(th))
        ok = all(r["wrong"] <= (max_wrong if r["in_library"] else 2 * max_wrong) for r in rows)
        if ok:
            return float(th)
    return 0.99


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", type=Path, nargs="+")
    p.add_argument("--features", default=K.FEATURES, choices=sorted(K.FEATURE_SETS))
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--max-wrong", type=float, default=0.01)
    p.add_argument(
        "--shipped", action="store_true", help="replay the shipped COEF and THRESHOLD instead of fitting"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "identity-fit.json")
    args = p.parse_args(argv)
    streams = read_streams(args.dumps)
    if args.shipped:
        args.features = K.FEATURES
        probs = [probabilities(s, np.array(K.COEF), K.FEATURES) for s in streams]
        th = K.THRESHOLD
    else:
        probs = [np.zeros(0)] * len(streams)
        for f in range(args.folds):
            train = [s for s in streams if fold_of(s.work, args.folds) != f]
            coef = fit_logistic(*design(train, args.features))
            for i, s in enumerate(streams):
                if fold_of(s.work, args.folds) == f:
                    probs[i] = probabilities(s, coef, args.features)
        th = choose_threshold(streams, probs, args.max_wrong)
    rows = table(streams, probs, th)
    coef_all = fit_logistic(*design(streams, args.features))
    print(
        f"identity ({args.features}: {', '.join(K.FEATURE_SETS[args.features])}), "
        f"{'the shipped COEF' if args.shipped else f'{args.folds}-fold by work'}, "
        f"threshold {th:.2f} (max wrong {args.max_wrong:.0%}); {len(streams)} streams"
    )
    print(
        "| library | excerpt s | in library | streams | identity right | wrong | ever wrong | median time to identity s |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        med = "-" if r["median_time_to_identity_s"] is None else f"{r['median_time_to_identity_s']:.1f}"
        print(
            f"| {r['size']} | {r['length_s']:g} | {'yes' if r['in_library'] else 'no'} | {r['streams']} "
            f"| {r['right']:.3f} | {r['wrong']:.3f} | {r['ever_wrong']:.3f} | {med} |"
        )
    print(f"COEF fitted on every work: ({', '.join(f'{c:.3f}' for c in coef_all)})")
    write_result(
        args.out,
        {
            "features": args.features,
            "feature_names": list(K.FEATURE_SETS[args.features]),
            "folds": args.folds,
            "max_wrong": args.max_wrong,
            "threshold": th,
            "shipped": args.shipped,
            "coef": [round(float(c), 4) for c in K.COEF] if args.shipped else None,
            "rows": rows,
            "coef_all_works": [round(float(c), 4) for c in coef_all],
            "dumps": [str(d) for d in args.dumps],
            "machine": cpu_name(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
